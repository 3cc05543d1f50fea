"""`python -m gateways.postback`: the postback gateway process (gRPC health/reflection,
/metrics, jobs.postback -> HTTP POSTs). Ready line (HERALD_READY_FILE): {"service":
"postback-gateway", "grpc_port", "metrics_port"}."""

from __future__ import annotations

import asyncio

from gateways.core.markers import MarkerKeys, SendMarkers
from gateways.core.recorder import RetryPolicy
from gateways.core.runtime import Runtime, RuntimeConfig
from gateways.postback import settings
from gateways.postback.channel import SPEC, PostbackChannel
from shared import bus, cache, log, production
from shared.adapters import self_check_all
from shared.grpc_server import ServiceRuntime

NAME = "postback-gateway"
DURABLE = "postback"
REQUIREMENTS = [*production.COMMON, *production.REDIS, *production.GRPC_SERVER]


async def main() -> None:
    logger = log.setup(NAME)
    rt = ServiceRuntime(NAME)
    rt.install_signal_handlers()
    rt.start_metrics()
    await rt.start_grpc([])
    nc = await bus.connect(name=NAME)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    redis = cache.connect()
    channel = PostbackChannel(settings.TIMEOUT.get_float(), settings.CONCURRENCY.get_int())
    markers = SendMarkers(redis, settings.MARKER_TTL.get_int(),
                          keys=MarkerKeys.for_channel(channel.name))
    policy = RetryPolicy(settings.MAX_ATTEMPTS.get_int(), settings.RETRY_BASE.get_float(),
                         settings.RETRY_MAX.get_float())
    runtime = Runtime(js, markers, channel, RuntimeConfig(DURABLE, SPEC.subject, policy=policy))
    stop = asyncio.Event()
    runner = asyncio.create_task(runtime.run(stop))
    rt.write_ready()
    waiting = asyncio.create_task(rt.wait())
    await asyncio.wait({waiting, runner}, return_when=asyncio.FIRST_COMPLETED)
    logger.info("stopping: finishing the posts in hand")
    stop.set()
    try:
        await runner
    finally:
        waiting.cancel()
        await channel.close()
        await nc.drain()
        await redis.aclose()
        await rt.shutdown()


if __name__ == "__main__":
    production.enforce(NAME, REQUIREMENTS)
    self_check_all()  # library internals as the adapters expect, before serving
    asyncio.run(main())
