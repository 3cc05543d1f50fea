"""Pacing of a bind's submits to its configured throughput (msg/s)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    """Paces submits to `rate` per second (GCRA: each caller reserves the next slot at once,
    so concurrent callers never race and the long-run rate is exact whatever the sleep
    granularity). `burst` slots may be used back to back after an idle spell."""

    def __init__(self, rate: float, burst: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.factor = 1.0  # < 1 while the SMSC is throttling us
        self.burst = burst
        self.clock = clock
        self._next = 0.0

    def reserve(self) -> float:
        """Seconds to wait before the reserved slot (0 when it is free now)."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        interval = 1.0 / (self.rate * self.factor)
        slot = max(self._next, now - (self.burst - 1) * interval)
        self._next = slot + interval
        return max(0.0, slot - now)

    async def acquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            await asyncio.sleep(wait)

    def slow_down(self) -> None:
        self.factor = max(0.1, self.factor * 0.8)

    def recover(self) -> None:
        if self.factor < 1.0:
            self.factor = min(1.0, self.factor * 1.01)
