"""A gateway process's life, the same for every channel: gRPC health and reflection,
/metrics, NATS and Redis connections, the gateway run until SIGTERM (or until it ends by
itself), then a drain: the jobs in hand finish before the connections close."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from nats.js import JetStreamContext

from shared import bus, cache, log, production
from shared.adapters import self_check_all
from shared.grpc_server import ServiceRuntime


@dataclass
class Connections:
    js: JetStreamContext
    redis: aioredis.Redis


class Served(Protocol):
    """What a process serves: run until `stop`, then release what it holds."""

    async def run(self, stop: asyncio.Event) -> None: ...

    async def ready(self) -> dict[str, Any]:
        """Fields of the ready line, once the gateway can take jobs (may wait for a bind)."""

    async def close(self) -> None: ...


async def serve(name: str, build: Callable[[Connections], Served], *,
                redis_max_connections: int | None = None,
                stopping: str = "stopping: finishing the jobs in hand") -> None:
    logger = log.setup(name)
    rt = ServiceRuntime(name)
    rt.install_signal_handlers()
    rt.start_metrics()
    await rt.start_grpc([])
    nc = await bus.connect(name=name)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    # Blocking pool: bursts of handlers wait for a connection, never fail.
    redis = (cache.connect() if redis_max_connections is None
             else cache.connect(max_connections=redis_max_connections))
    served = build(Connections(js, redis))
    stop = asyncio.Event()
    runner = asyncio.create_task(served.run(stop))
    rt.write_ready(**await served.ready())
    waiting = asyncio.create_task(rt.wait())
    await asyncio.wait({waiting, runner}, return_when=asyncio.FIRST_COMPLETED)
    logger.info(stopping)
    stop.set()
    try:
        await runner
    finally:
        waiting.cancel()
        await served.close()
        await nc.drain()
        await redis.aclose()
        await rt.shutdown()


def main(name: str, requirements: list[Any], process: Callable[[], Awaitable[None]],
         uvloop: bool = False) -> None:
    """Production checks, library self-checks, then the process on the event loop
    (uvloop when asked for and installed: a faster loop and transports)."""
    production.enforce(name, requirements)
    self_check_all()  # library internals as the adapters expect, before serving
    if uvloop:
        try:
            import uvloop as fast_loop
        except ImportError:
            pass
        else:
            fast_loop.run(process())
            return
    asyncio.run(process())
