"""Development SMTP sink: accepts mail for `make run` and the tests and writes every
accepted message to HERALD_SINK_DIR as <time>-<queue id>.eml (with Return-Path and
Delivered-To prepended, as a delivering MTA would).

Answers on demand, by the recipient's local part:
  reject-...@     550 5.1.1 at RCPT (unknown user)
  defer-...@      451 4.7.1 at RCPT on the first try, then accepted
  defer-N-...@    451 4.7.1 on the first N tries of that address, then accepted
  spam-...@       554 5.7.1 after DATA (content rejected)
  hold-...@       stored when its DATA ends, but the 250 waits while `hold_file` exists
                  (a relay that took the message and whose answer is late, or lost when
                  the client dies meanwhile)

Fault modes for the whole sink (tests, chaos): while `tempfail_file` exists, or until the
Unix time `tempfail_until`, every recipient is answered 451 4.3.0 (a relay refusing mail
for a while); HERALD_SINK_TEMPFAIL_FILE / _UNTIL / HERALD_SINK_HOLD_FILE for the process.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

_DEFER_N = re.compile(r"^defer-(\d+)-")
HOLD_POLL = 0.05  # seconds between two looks at the hold file


class SinkHandler:
    def __init__(self, directory: Path, tempfail_file: Path | None = None,
                 tempfail_until: float = 0.0, hold_file: Path | None = None) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.deferrals: dict[str, int] = {}  # address -> 451s given so far
        self.accepted = 0
        self.tempfailed = 0  # recipients refused by the fault mode
        self.tempfail_file = tempfail_file
        self.tempfail_until = tempfail_until
        self.hold_file = hold_file
        self._seq = itertools.count()

    def tempfailing(self) -> bool:
        return (self.tempfail_until > time.time()
                or (self.tempfail_file is not None and self.tempfail_file.exists()))

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if self.tempfailing():
            self.tempfailed += 1
            return "451 4.3.0 Temporary failure: mail system busy, try again later"
        local = address.rpartition("@")[0].lower()
        if local.startswith("reject-"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if local.startswith("defer-"):
            m = _DEFER_N.match(local)
            wanted = int(m.group(1)) if m else 1
            key = address.lower()
            given = self.deferrals.get(key, 0)
            if given < wanted:
                self.deferrals[key] = given + 1
                return f"451 4.7.1 <{address}>: Recipient address deferred: try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if any(r.rpartition("@")[0].lower().startswith("spam-") for r in envelope.rcpt_tos):
            return "554 5.7.1 Message rejected: content looks like spam"
        queue_id = uuid.uuid4().hex[:12]
        head = f"Return-Path: <{envelope.mail_from}>\r\n" + "".join(
            f"Delivered-To: {r}\r\n" for r in envelope.rcpt_tos)
        content: Any = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode("utf-8")
        name = f"{time.time_ns()}-{next(self._seq):06d}-{queue_id}.eml"
        await asyncio.to_thread(self._write, name, head.encode("utf-8") + content)
        self.accepted += 1
        if self.hold_file is not None and any(
                r.rpartition("@")[0].lower().startswith("hold-") for r in envelope.rcpt_tos):
            # stored: only the answer is late (a file flipped by another process: polled)
            while self.hold_file.exists():  # noqa: ASYNC110
                await asyncio.sleep(HOLD_POLL)
        return f"250 2.0.0 OK queued as {queue_id}"


    def _write(self, name: str, data: bytes) -> None:
        # Write then rename: a reader polling the directory never sees half a message.
        tmp = self.directory / f".{name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, self.directory / name)


async def start(directory: Path, host: str = "127.0.0.1", port: int = 0, *,
                tempfail_file: Path | None = None, tempfail_until: float = 0.0,
                hold_file: Path | None = None) -> tuple[asyncio.Server, SinkHandler, int]:
    """Serve the sink on the running loop; returns (server, handler, bound port)."""
    handler = SinkHandler(directory, tempfail_file, tempfail_until, hold_file)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        # hostname given: aiosmtpd would otherwise resolve this host's FQDN (slow DNS).
        lambda: SMTP(handler, hostname="herald-sink", ident="Herald sink",
                     enable_SMTPUTF8=True, data_size_limit=50 * 1024 * 1024, loop=loop),
        host, port,
    )
    bound = int(server.sockets[0].getsockname()[1])
    return server, handler, bound
