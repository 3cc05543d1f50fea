"""Redis client factory."""

from __future__ import annotations

import redis.asyncio as aioredis

from shared import config


def connect(url: str | None = None, max_connections: int = 256) -> aioredis.Redis:
    # A blocking pool waits for a free connection instead of raising on the N+1th
    # concurrent command, so bursts of concurrent handlers queue rather than fail.
    pool = aioredis.BlockingConnectionPool.from_url(
        url or config.REDIS_URL.get(), max_connections=max_connections, timeout=30,
        health_check_interval=30, socket_keepalive=True,
    )
    return aioredis.Redis(connection_pool=pool, decode_responses=False)
