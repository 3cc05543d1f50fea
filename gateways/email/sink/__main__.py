"""python -m gateways.email.sink: the development SMTP sink as a process.

Ready line (HERALD_READY_FILE): {"service": "email-sink", "smtp_port", "sink_dir", ...}
(grpc_port and metrics_port are 0: the sink serves neither).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from gateways.email import settings
from gateways.email.sink import start
from shared import log as shared_log
from shared.grpc_server import ServiceRuntime
from shared.metrics import split_addr

NAME = "email-sink"


def sink_dir() -> Path:
    return Path(os.path.abspath(settings.SINK_DIR.get()))


async def main() -> None:
    log = shared_log.setup(NAME)
    rt = ServiceRuntime(NAME)
    rt.install_signal_handlers()
    directory = sink_dir()
    host, port = split_addr(settings.SINK_ADDR.get())
    tempfail, hold = settings.SINK_TEMPFAIL_FILE.get(), settings.SINK_HOLD_FILE.get()
    server, handler, bound = await start(
        directory, host, port, tempfail_file=Path(tempfail) if tempfail else None,
        tempfail_until=settings.SINK_TEMPFAIL_UNTIL.get_float(),
        hold_file=Path(hold) if hold else None)
    rt.write_ready(smtp_host=host, smtp_port=bound, sink_dir=str(directory))
    await rt.wait()
    server.close()
    await server.wait_closed()
    log.info("stopped", extra={"accepted": handler.accepted, "tempfailed": handler.tempfailed})


if __name__ == "__main__":
    asyncio.run(main())
