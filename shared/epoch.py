"""When did Redis's current data begin? The gateways keep send markers in Redis (run with
the append-only file). If Redis ever loses its data anyway, a job redelivered without a
marker may still have been sent before the loss; the epoch lets a gateway tell those jobs
(published before the epoch began, delivered before) from jobs it may send safely.

The key holds the Unix time it was created; SET NX makes every process agree on it, and a
process that finds it gone (the data set was lost) creates the next epoch.
"""

from __future__ import annotations

import time
from typing import Any

KEY = "herald:epoch"


async def current(redis: Any, now: float | None = None) -> float:
    """The Unix time the current Redis data set began (created now if missing)."""
    stamp = repr(time.time() if now is None else now)
    await redis.set(KEY, stamp, nx=True)
    raw = await redis.get(KEY)
    if raw is None:  # deleted between the two calls: take ours
        return float(stamp)
    return float(raw.decode() if isinstance(raw, bytes) else raw)


def maybe_sent_before_loss(published_at: float, deliveries: int, has_marker: bool,
                           epoch_began: float) -> bool:
    """A job with no marker that was published before this epoch and already delivered once
    may have been sent under the lost markers: never send it blindly again."""
    return not has_marker and deliveries > 1 and published_at < epoch_began
