"""What a redelivered job's marker, found standing by the claim, means for it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, NamedTuple

from gateways.core import markers as m
from gateways.core.outcome import Outcome, from_marker

# reason label of ABANDONED -> the metric's bounded label values
REASONS = ("worker_stopped", "redis_lost", "corrupt_marker")

REPLAY = "replay"  # recorded outcome: re-publish it, never send again
KNOWN = "known"  # this process decided it but could not record it: record it now
BUSY = "busy"  # another batch or process holds or is sending it right now
ABANDON = "abandon"  # written by a process that stopped before its answer was recorded


class Verdict(NamedTuple):
    action: str
    outcome: Outcome | None = None
    at: datetime | None = None  # REPLAY: when the outcome was recorded
    retry: float = 0.0  # BUSY: look again after this many seconds
    reason: str = ""  # ABANDON


def judge(previous: dict[str, Any] | None, alive: bool, owner: str, lease: float,
          unrecorded: Any, key: tuple[str, int]) -> Verdict:
    """previous: the marker that stood (the claim was not taken); alive: its claimant beats
    its liveness key; unrecorded: this process's memory of outcomes Redis did not take."""
    previous = previous or {}
    state = previous.get("s")
    if state in {m.SUBMITTED, m.FAILED}:
        at = datetime.fromtimestamp(float(previous.get("t", time.time())), UTC)
        return Verdict(REPLAY, from_marker(previous), at)
    if previous.get("o") == owner and state in {m.HELD, m.WRITTEN}:
        known = unrecorded.pop(key)
        if known is not None:
            return Verdict(KNOWN, known)
    age = time.time() - float(previous.get("t", 0))
    if state == m.HELD or (state in {m.WRITTEN, m.SENDING} and age < lease
                           and (alive or state == m.SENDING)):
        # A redelivery racing its original: look again soon, its outcome is usually
        # recorded within seconds.
        return Verdict(BUSY, retry=min(max(lease - age, 0.5), 2.0))
    # Written to the carrier by a process that stopped before recording the answer (or a
    # marker nobody can read): the carrier may or may not have the message.
    return Verdict(ABANDON, reason="worker_stopped" if state in {m.WRITTEN, m.SENDING}
                   else "corrupt_marker")
