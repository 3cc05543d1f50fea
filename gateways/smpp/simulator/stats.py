"""The simulator's ground truth: what it accepted, refused and delivered (`SimStats`), and
the JSON files other processes read it from (`StatsFile`, `read_ground_truth`).

Two files: the counters (`path`, rewritten whenever they change, 20 times a second at most)
and the per-destination maps (`path` + ".maps", see DETAIL_MAX). Each names the maps' version
(`maps_version`: it grows with every submit), so a reader knows whether the maps it holds
include every submit the counters count."""

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

# The per-destination maps are written with every change (20 times a second at most) while
# they are this small; beyond, every DETAIL_EVERY seconds while submits keep coming, once
# submits paused for QUIET_AFTER, and at stop. Copied and written whole 20 times a second, a
# million-recipient run's maps took the simulator 0.9 ms of CPU per SMS, more than every
# Herald process together, on the same cores.
DETAIL_MAX = 10_000
DETAIL_EVERY = 5.0
QUIET_AFTER = 0.5
TRUTH_WAIT = DETAIL_EVERY + 1  # the longest a reader waits for current maps
MAPS_SUFFIX = ".maps"


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

    @property
    def maps_version(self) -> int:
        """Grows whenever a per-destination map changes: every submit_sm counts in `attempts`,
        every accepted one (and its text) once more."""
        return self.submits_total + self.submits_accepted

    def counters(self) -> dict[str, Any]:
        """The counters, without the per-destination maps."""
        # Not dataclasses.asdict: it deep-copies accepted_messages (one entry per message),
        # which at 20 snapshots/s ate most of the simulator's CPU in long benches.
        d = {name: getattr(self, name) for name in _SCALAR_STATS}
        d["accepted_distinct"] = len(self.accepted_messages)
        d["destinations"] = len(self.attempts)
        d["maps_version"] = self.maps_version
        return d

    def maps(self) -> dict[str, Any]:
        """The per-destination maps, copied, with the version they are of."""
        d: dict[str, Any] = {"maps_version": self.maps_version,
                             "accepted": dict(self.accepted), "attempts": dict(self.attempts)}
        if self.texts:
            d["texts"] = {k: list(v) for k, v in self.texts.items()}
        return d


_SCALAR_STATS = tuple(f.name for f in fields(SimStats) if f.type in ("int", int))


class DetailPacer:
    """Whether the per-destination maps are to be written now (see DETAIL_MAX): never when
    the written ones are current; while small, always; beyond, every DETAIL_EVERY seconds, or
    once submits paused for QUIET_AFTER (a finished run's readers wait no longer than that)."""

    def __init__(self, stats: SimStats) -> None:
        self.stats = stats
        self._written = -1                # the version last written
        self._written_at = float("-inf")
        self._seen = -1                   # the version seen at the last call, and since when
        self._seen_since = 0.0

    def due(self) -> bool:
        version = self.stats.maps_version
        if version == self._written:
            return False
        now = time.monotonic()
        if version != self._seen:
            self._seen, self._seen_since = version, now
        if (len(self.stats.attempts) <= DETAIL_MAX or now - self._written_at >= DETAIL_EVERY
                or now - self._seen_since >= QUIET_AFTER):
            self._written, self._written_at = version, now
            return True
        return False


def _replace(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)  # readers never see a half-written file


class StatsFile:
    """The ground truth's two JSON files, each rewritten only when it changed."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.maps_path = maps_path(self.path)
        self._written: dict[str, Any] = {}

    def write(self, counters: dict[str, Any], maps: dict[str, Any] | None = None) -> None:
        # The maps first: a reader that sees the counters' version finds maps at least as new.
        if maps is not None:
            _replace(self.maps_path, maps)
        if counters != self._written:
            _replace(self.path, counters)
            self._written = counters

    async def keep_written(self, snapshot: Callable[[], tuple[dict[str, Any], dict[str, Any] | None]]) -> None:
        while True:
            await asyncio.sleep(0.05)
            self.write(*snapshot())


def maps_path(path: Path) -> Path:
    return path.with_name(path.name + MAPS_SUFFIX)


def _load(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def read_ground_truth(path: Path | str, wait: float = TRUTH_WAIT) -> dict[str, Any]:
    """The counters and the per-destination maps (`accepted`, `attempts`, `texts`) in one dict,
    waiting up to `wait` seconds for maps as new as the counters (submits must have paused
    for that); past it, the newest maps there are, with `maps_current` False."""
    path = Path(path)
    deadline = time.monotonic() + wait
    while True:
        counters, maps = _load(path), _load(maps_path(path))
        current = maps.get("maps_version", -1) >= counters.get("maps_version", -1)  # no file: none
        if current or time.monotonic() >= deadline:
            out = {"accepted": {}, "attempts": {}, **maps, **counters}
            out["maps_current"] = current
            return out
        time.sleep(0.05)
