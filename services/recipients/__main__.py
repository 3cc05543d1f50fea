"""python -m services.recipients: RecipientService + the contact-event suppression consumer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

from herald.v1 import recipients_pb2_grpc

import shared.log
from services.recipients.consumer import DURABLE, SUBJECT, ContactEventConsumer
from services.recipients.servicer import RecipientServicer
from services.recipients.store import Store
from shared import bus, db, production
from shared.adapters import self_check_all
from shared.grpc_server import ServiceRuntime

NAME = "recipients"
MIGRATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
# Production mode: no development fallback for any of these.
REQUIREMENTS = [*production.COMMON, *production.SQL, *production.GRPC_SERVER,
                *production.AUTHENTICATED]


async def main() -> None:
    log = shared.log.setup(NAME)
    rt = ServiceRuntime(NAME)
    rt.install_signal_handlers()
    url = db.db_url(NAME)
    await db.migrate(MIGRATIONS, url)
    engine = db.make_engine(url)
    store = Store(engine)
    nc = await bus.connect(name=NAME)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    rt.start_metrics()
    await rt.start_grpc([(recipients_pb2_grpc.add_RecipientServiceServicer_to_server,
                          RecipientServicer(store), "herald.v1.RecipientService")])
    consumer = asyncio.create_task(bus.pull_loop(
        js, stream=bus.EVENTS_STREAM, durable=DURABLE, subject=SUBJECT,
        handler=ContactEventConsumer(store).handle, stop=rt.stop_event))
    rt.write_ready()
    await rt.wait()
    log.info("stopping")
    # pull_loop notices the stop event within one fetch timeout.
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(consumer, 5)
    await rt.shutdown()
    await nc.drain()
    await engine.dispose()


if __name__ == "__main__":
    # `migrate` needs only the database.
    production.enforce(NAME, production.SQL if sys.argv[1:2] == ["migrate"] else REQUIREMENTS)
    if not db.migrate_command(NAME, MIGRATIONS, sys.argv[1:]):
        self_check_all()  # library internals as the adapters expect, before serving
        asyncio.run(main())
