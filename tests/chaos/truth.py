"""Ground truth: what the SMSC simulator accepted and the SMTP sink stored, per destination.

The simulator process writes its counters to a stats file (HERALD_SMPP_SIM_STATS_FILE) every
50 ms and once more when it stops; a restarted simulator starts from zero, so the counts of
its earlier lives are banked before it is started again (bank_smsc). The sink writes one
.eml file per accepted mail, its Delivered-To header naming the recipient."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path


class GroundTruth:
    def __init__(self, stats_file: Path, sink_dir: Path) -> None:
        self.stats_file = stats_file
        self.sink_dir = sink_dir
        self._banked_accepted: Counter[str] = Counter()
        self._banked_attempts: Counter[str] = Counter()

    def _snapshot(self) -> dict:
        try:
            return dict(json.loads(self.stats_file.read_text()))
        except (OSError, ValueError):
            return {}

    def bank_smsc(self) -> None:
        """Call after the simulator stopped (its final counters written), before it starts."""
        snap = self._snapshot()
        self._banked_accepted.update(snap.get("accepted", {}))
        self._banked_attempts.update(snap.get("attempts", {}))
        self.stats_file.unlink(missing_ok=True)

    def smsc(self) -> tuple[Counter[str], Counter[str]]:
        """(accepted submits, every submit_sm received) per destination (digits, no +)."""
        snap = self._snapshot()
        accepted = Counter(self._banked_accepted)
        accepted.update(snap.get("accepted", {}))
        attempts = Counter(self._banked_attempts)
        attempts.update(snap.get("attempts", {}))
        return accepted, attempts

    def smsc_counter(self, key: str) -> int:
        return int(self._snapshot().get(key, 0))

    def mails(self) -> Counter[str]:
        """Stored mails per recipient address (lower case)."""
        out: Counter[str] = Counter()
        for path in self.sink_dir.glob("*.eml"):
            with open(path, "rb") as fh:
                for raw in fh:
                    line = raw.decode(errors="replace")
                    if line.startswith("Delivered-To:"):
                        out[line.split(":", 1)[1].strip().lower()] += 1
                    elif not line.startswith("Return-Path:"):
                        break  # the sink prepends these two headers only
        return out
