"""Log lines that can come in floods (unmatched receipts, unlinked replies) at most once per
key per interval, each line saying how many were suppressed since the previous one."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, every: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, level: int = logging.INFO) -> None:
        self.logger = logger
        self.level = level
        self.every = every
        self.clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def info(self, key: str, message: str, **extra: Any) -> bool:
        """Log `message` (at `level`) unless a line for `key` went out less than `every` seconds
        ago (then count it as suppressed). True if it was logged. `key` must come from a
        small fixed set: one timestamp is kept per key."""
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.every:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            message = f"{message} ({suppressed} more suppressed in the last {self.every:g} s)"
        self.logger.log(self.level, message, extra={**extra, "suppressed": suppressed})
        return True
