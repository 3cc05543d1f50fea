"""The simulator's ground truth: what it accepted, refused and delivered (`SimStats`), and
the JSON file other processes read it from (`StatsFile`)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

# The per-destination maps go into every snapshot (20 a second) while they are this small;
# beyond, at most every DETAIL_EVERY seconds and at stop. Copied and written whole 20 times a
# second, a million-recipient run's maps took the simulator 0.9 ms of CPU per SMS, more than
# every Herald process together, on the same cores.
DETAIL_MAX = 10_000
DETAIL_EVERY = 5.0


@dataclass
class SimStats:
    accepted: Counter[str] = field(default_factory=Counter)  # destination -> accepted submits
    attempts: Counter[str] = field(default_factory=Counter)  # destination -> every submit_sm
    # (destination, short_message) -> accepted submits: > 1 is a duplicate SMS
    accepted_messages: Counter[str] = field(default_factory=Counter)
    submits_total: int = 0
    submits_accepted: int = 0
    submits_rejected: int = 0
    submits_throttled: int = 0
    submits_queue_full: int = 0
    # Which destinations the every-Nth refusals hit (the order of submits varies, so tests
    # need this to know a destination's expected attempt count).
    queue_full_by_dest: Counter = field(default_factory=Counter)
    submits_syserr: int = 0
    submits_dropped: int = 0
    disconnects: int = 0          # forced with disconnect_after
    receipts_sent: int = 0        # deliver_sm written, retries included
    receipts_acked: int = 0       # receipts answered ESME_ROK (duplicates not counted)
    receipts_retried: int = 0     # non-zero deliver_sm_resp, timeout or no receiver
    receipts_refused: int = 0     # non-zero deliver_sm_resp or no answer in time
    receipts_dropped: int = 0     # given up after receipt_max_attempts
    receipts_duplicated: int = 0  # extra copies sent with duplicate_receipts
    receipts_pending: int = 0     # scheduled, not yet acked or dropped
    mo_sent: int = 0
    mo_acked: int = 0
    binds: int = 0
    unbinds: int = 0
    enquire_links: int = 0
    connections: int = 0

    duplicate_submits: int = 0    # accepted submits of a (destination, text) seen before
    # destination -> texts of the messages accepted for it, multipart reassembled (keep_texts)
    texts: dict[str, list[str]] = field(default_factory=dict)

    def accept(self, dest: str, key: str) -> None:
        self.accepted[dest] += 1
        self.submits_accepted += 1
        n = self.accepted_messages[key] = self.accepted_messages[key] + 1
        if n > 1:
            self.duplicate_submits += 1

    def as_dict(self, detail: bool = True) -> dict[str, Any]:
        """The counters; with `detail`, the per-destination maps too."""
        # Not dataclasses.asdict: it deep-copies accepted_messages (one entry per message),
        # which at 20 snapshots/s ate most of the simulator's CPU in long benches.
        d = {name: getattr(self, name) for name in _SCALAR_STATS}
        d["accepted_distinct"] = len(self.accepted_messages)
        d["destinations"] = len(self.attempts)
        if not detail:
            return d
        d["accepted"] = dict(self.accepted)
        d["attempts"] = dict(self.attempts)
        if self.texts:
            d["texts"] = {k: list(v) for k, v in self.texts.items()}
        return d


_SCALAR_STATS = tuple(f.name for f in fields(SimStats) if f.type in ("int", int))


class DetailPacer:
    """Whether the next snapshot carries the per-destination maps (see DETAIL_MAX)."""

    def __init__(self, stats: SimStats) -> None:
        self.stats = stats
        self._last = 0.0

    def due(self) -> bool:
        if len(self.stats.attempts) <= DETAIL_MAX:
            return True
        now = time.monotonic()
        if now - self._last >= DETAIL_EVERY:
            self._last = now
            return True
        return False


class StatsFile:
    """A JSON snapshot of the ground truth, rewritten only when it changed."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self._written: dict[str, Any] = {}

    def write(self, snapshot: dict[str, Any]) -> None:
        if snapshot == self._written:
            return
        path = self.path
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(snapshot))
        os.replace(tmp, path)  # readers never see a half-written file
        self._written = snapshot

    async def keep_written(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        while True:
            await asyncio.sleep(0.05)
            self.write(snapshot())
