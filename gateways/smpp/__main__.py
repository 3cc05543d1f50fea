"""`python -m gateways.smpp`: the SMPP gateway process (gRPC health/reflection, /metrics,
JetStream jobs -> SMSC, receipts -> events)."""

from __future__ import annotations

import asyncio

from gateways.smpp import routes, settings
from gateways.smpp.gateway import Gateway, GatewayConfig
from shared import bus, cache, log, production
from shared.adapters import self_check_all
from shared.grpc_server import ServiceRuntime

NAME = "smpp-gateway"
# Production mode: no development fallback for any of these.
REQUIREMENTS = [*production.COMMON, *production.REDIS, *production.GRPC_SERVER,
                production.need(settings.ROUTES, settings.HOST,
                                fallback="an SMSC on the loopback interface")]


async def main() -> None:
    logger = log.setup(NAME)
    rt = ServiceRuntime(NAME)
    rt.install_signal_handlers()
    rt.start_metrics()
    await rt.start_grpc([])
    nc = await bus.connect(name=NAME)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    # Blocking pool: bursts of job and receipt handlers wait for a connection, never fail.
    redis = cache.connect(max_connections=settings.REDIS_MAX_CONNECTIONS.get_int())
    route_cfgs = routes.load()
    gateway = Gateway(js, redis, route_cfgs, GatewayConfig.from_settings())
    jobs_stop = asyncio.Event()
    runner = asyncio.create_task(gateway.run(jobs_stop))
    # Ready once bound if the SMSC answers promptly; a gateway that cannot bind still
    # starts (it keeps retrying) and says so in its ready line.
    timeout = max(r.client.response_timeout for r in route_cfgs)
    bound = await gateway.wait_bound(timeout)
    first = route_cfgs[0].client
    rt.write_ready(smpp_bound=bound, smsc=f"{first.host}:{first.port}",
                   routes=[r.name for r in route_cfgs])
    stop_wait = asyncio.create_task(rt.wait())
    await asyncio.wait({stop_wait, runner}, return_when=asyncio.FIRST_COMPLETED)
    logger.info("stopping: finishing the jobs in hand, then unbinding")
    jobs_stop.set()
    try:
        await runner
    finally:
        stop_wait.cancel()
        await nc.drain()
        await redis.aclose()
        await rt.shutdown()


if __name__ == "__main__":
    production.enforce(NAME, REQUIREMENTS)
    self_check_all()
    try:  # a project dependency (faster loop and transports); the plain loop is the fallback
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
