"""python -m services.stats: StatsService (gRPC) and the "stats" event consumer."""

from __future__ import annotations

import asyncio

from herald.v1 import stats_pb2_grpc

from services.stats import settings
from services.stats.aggregator import Aggregator
from services.stats.catchup import CatchUp
from services.stats.consumer import Consumer
from services.stats.directory import CampaignDirectory
from services.stats.ledger import LedgerReader
from services.stats.rebuild import RebuildStore
from services.stats.rebuilder import Rebuilder
from services.stats.servicer import StatsServicer
from shared import bus, cache, config, production
from shared.adapters import self_check_all
from shared.grpc_server import ServiceRuntime
from shared.log import setup

# Production mode: no development fallback for any of these.
REQUIREMENTS = [*production.COMMON, *production.REDIS, *production.GRPC_SERVER,
                *production.AUTHENTICATED, *production.CLIENT,
                production.need(config.CAMPAIGNS_ADDR, fallback="the loopback campaigns service")]


async def main() -> None:
    log = setup("stats")
    rt = ServiceRuntime("stats")
    rt.install_signal_handlers()
    redis = cache.connect()
    agg = Aggregator(redis, settings.PREFIX.get(), message_ttl=settings.MESSAGE_TTL.get_int(),
                     event_ttl=settings.EVENT_TTL.get_int(), daily_ttl=settings.DAILY_TTL.get_int())
    await agg.load()
    nc = await bus.connect(name="stats")
    js = nc.jetstream()
    await bus.ensure_streams(js)
    consumer = Consumer(agg, js, durable=settings.DURABLE.get(), batch=settings.BATCH.get_int())
    rt.start_metrics()
    catchup = CatchUp(js, consumer.durable, settings.REBUILD_CATCHUP_TIMEOUT.get_float())
    # Asked about campaigns stats has no events for yet (exists? whose? which status?).
    directory = CampaignDirectory(agg, config.CAMPAIGNS_ADDR.get(), catchup.last_seq)
    rebuilder = Rebuilder(
        LedgerReader(directory, page_size=settings.REBUILD_PAGE.get_int()),
        RebuildStore(redis, agg.prefix, message_ttl=agg.message_ttl, daily_ttl=agg.daily_ttl),
        catchup)
    servicer = StatsServicer(agg, directory, rt.stop_event, rebuilder, consumer_position=catchup)
    await rt.start_grpc([(stats_pb2_grpc.add_StatsServiceServicer_to_server, servicer,
                          "herald.v1.StatsService")])
    task = asyncio.create_task(consumer.run(rt.stop_event), name="stats-consumer")

    def consumer_done(t: asyncio.Task) -> None:
        # A dead consumer must not leave a pod that serves stale stats: exit, get restarted.
        if not t.cancelled() and t.exception() is not None:
            exc = t.exception()
            log.error("consumer stopped", exc_info=exc,
                      extra={"error_type": type(exc).__name__, "error": str(exc)})
            rt.stop_event.set()

    task.add_done_callback(consumer_done)
    rt.write_ready(durable=consumer.durable)
    await rt.wait()
    log.info("shutting down")
    await rt.shutdown()
    await asyncio.wait([task], timeout=5)
    await nc.drain()
    await directory.close()
    await redis.aclose()
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise SystemExit(1)


if __name__ == "__main__":
    production.enforce("stats", REQUIREMENTS)
    self_check_all()  # library internals as the adapters expect, before serving
    asyncio.run(main())
