"""Rate-limited warnings: one line per condition and interval, with how many happened."""

from __future__ import annotations

import logging
import time
from typing import Any

LOG_EVERY = 10.0  # seconds between two lines about the same recurring condition


class RateLimitedLog:
    """One warning per condition and LOG_EVERY seconds, with how many happened since the
    last line: an SRE sees every kind at once and the volume, not one line per message."""

    def __init__(self, logger: logging.Logger, event: str, every: float = LOG_EVERY) -> None:
        self.log = logger
        self.event = event  # the constant message: a stable event name
        self.every = every
        self._counts: dict[str, int] = {}
        self._example: dict[str, dict[str, Any]] = {}
        self._last: dict[str, float] = {}

    def note(self, reason: str, n: int = 1, **example: Any) -> None:
        self._counts[reason] = self._counts.get(reason, 0) + n
        self._example.setdefault(reason, example)
        self.flush(reason)

    def flush(self, only: str | None = None) -> None:
        now = time.monotonic()
        for reason in [only] if only is not None else list(self._counts):
            n = self._counts.get(reason, 0)
            if n and now - self._last.get(reason, -self.every) >= self.every:
                self._last[reason] = now
                self._counts[reason] = 0
                self.log.warning(self.event, extra={"reason": reason, "count": n,
                                                    **self._example.pop(reason, {})})
