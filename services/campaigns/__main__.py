"""python -m services.campaigns: CampaignService, scheduler/dispatcher and ledger consumer."""

from __future__ import annotations

import asyncio
import os
import sys

from herald.v1 import campaigns_pb2_grpc, recipients_pb2_grpc, stats_pb2_grpc

from services.campaigns import settings
from services.campaigns.ledger import Ledger
from services.campaigns.scheduler import Scheduler
from services.campaigns.servicer import CampaignServicer
from services.campaigns.store import Store
from shared import bus, config, db, production, tls
from shared.adapters import self_check_all
from shared.grpc_server import ServiceRuntime
from shared.log import setup

MIGRATIONS = os.path.join(os.path.dirname(__file__), "migrations")
# Production mode: no development fallback for any of these.
REQUIREMENTS = [*production.COMMON, *production.SQL, *production.GRPC_SERVER,
                *production.AUTHENTICATED, *production.CLIENT,
                production.need(config.RECIPIENTS_ADDR, fallback="the loopback recipients service"),
                production.need(config.STATS_ADDR, fallback="the loopback stats service")]


async def main() -> None:
    log = setup("campaigns")
    rt = ServiceRuntime("campaigns")
    rt.install_signal_handlers()
    url = db.db_url("campaigns")
    await db.migrate(MIGRATIONS, url)
    engine = db.make_engine(url)
    nc = await bus.connect(name="campaigns")
    js = nc.jetstream()
    await bus.ensure_streams(js)
    credentials = tls.client_credentials()
    channel = tls.open_channel(config.RECIPIENTS_ADDR.get(), credentials)
    # ReconcileCampaign asks the stats service (channels connect lazily: stats may start later).
    stats_channel = tls.open_channel(config.STATS_ADDR.get(), credentials)
    store = Store(engine)
    recipients = recipients_pb2_grpc.RecipientServiceStub(channel)
    scheduler = Scheduler(store, js, recipients,
                          interval=settings.SCHEDULER_INTERVAL.get_float(),
                          batch=settings.DISPATCH_BATCH.get_int(), job_ttl=settings.JOB_TTL.get_float(),
                          lease=settings.SCHEDULER_LEASE.get_float(),
                          auto_pause=settings.AUTO_PAUSE_FAILURES.get_int(),
                          export_ttl=settings.EXPORT_TTL.get_float(), max_payload=nc.max_payload)
    servicer = CampaignServicer(store, on_cancel=scheduler.cancel_queued, recipients=recipients,
                                js=js, on_trigger=scheduler.wake.set,
                                stats=stats_pb2_grpc.StatsServiceStub(stats_channel))
    rt.start_metrics()
    await rt.start_grpc([(campaigns_pb2_grpc.add_CampaignServiceServicer_to_server, servicer,
                          "herald.v1.CampaignService")])
    tasks = [asyncio.create_task(scheduler.run(rt.stop_event), name="scheduler"),
             asyncio.create_task(Ledger(store, js).run(rt.stop_event), name="ledger")]

    def task_done(t: asyncio.Task) -> None:
        # A dead scheduler or ledger must not leave a pod that looks healthy: exit, get restarted.
        if not t.cancelled() and t.exception() is not None:
            exc = t.exception()
            log.error("background task stopped", extra={
                "task": t.get_name(), "error": f"{type(exc).__name__}: {exc}"}, exc_info=exc)
            rt.stop_event.set()

    for t in tasks:
        t.add_done_callback(task_done)
    rt.write_ready(db=url.split("://", 1)[0])
    await rt.wait()
    log.info("shutting down")
    await rt.shutdown()
    await asyncio.wait(tasks, timeout=5)
    failed = any(t.done() and not t.cancelled() and t.exception() is not None for t in tasks)
    await channel.close()
    await stats_channel.close()
    await nc.drain()
    await engine.dispose()
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    # `migrate` needs only the database.
    production.enforce("campaigns", production.SQL if sys.argv[1:2] == ["migrate"] else REQUIREMENTS)
    if not db.migrate_command("campaigns", MIGRATIONS, sys.argv[1:]):
        self_check_all()  # library internals as the adapters expect, before serving
        asyncio.run(main())
