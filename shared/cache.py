"""Redis client factory."""

from __future__ import annotations

import redis.asyncio as aioredis

from shared import config


def connect(url: str | None = None) -> aioredis.Redis:
    return aioredis.from_url(
        url or config.REDIS_URL.get(),
        decode_responses=False,
        health_check_interval=30,
        socket_keepalive=True,
    )
