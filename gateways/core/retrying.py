"""A step retried in place with back-off for a bounded time (Redis/NATS trouble), for what
a redelivery cannot redo: an outcome the carrier already gave, a receipt many carriers
never send again once refused."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def retrying(step: Callable[[], Awaitable[T]], retry_for: float, log: logging.Logger,
                   what: str, max_delay: float = 2.0) -> T:
    """`step()`'s result; retried from 50 ms, doubling up to max_delay, while the next try
    still starts within retry_for of the first (then the last error is raised)."""
    deadline = time.monotonic() + retry_for
    delay = 0.05
    while True:
        try:
            return await step()
        except Exception as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning(f"{what} failed; retrying", extra={"error": f"{type(exc).__name__}: {exc}"})
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
