"""Ground truth: what the SMSC simulator accepted and the SMTP sink stored, per destination.

The simulator process writes its counters to a stats file (HERALD_SMPP_SIM_STATS_FILE) every
50 ms and once more when it stops; a restarted simulator starts from zero, so the counts of
its earlier lives are banked before it is started again (bank_smsc). The sink writes one
.eml file per accepted mail, its Delivered-To header naming the recipient."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from gateways.smpp.simulator.stats import TRUTH_WAIT, maps_path, read_ground_truth


class GroundTruth:
    def __init__(self, stats_file: Path, sink_dir: Path) -> None:
        self.stats_file = stats_file
        self.sink_dir = sink_dir
        self._banked_accepted: Counter[str] = Counter()
        self._banked_attempts: Counter[str] = Counter()

    def _snapshot(self, wait: float = TRUTH_WAIT) -> dict:
        """The simulator's counters and maps; maps as new as the counters unless `wait` runs
        out first (submits still coming), then the newest there are."""
        return read_ground_truth(self.stats_file, wait=wait)

    def bank_smsc(self) -> None:
        """Call after the simulator stopped (its final counters and maps written), before it
        starts again."""
        snap = self._snapshot(wait=0)
        self._banked_accepted.update(snap["accepted"])
        self._banked_attempts.update(snap["attempts"])
        self.stats_file.unlink(missing_ok=True)
        maps_path(self.stats_file).unlink(missing_ok=True)

    def smsc(self) -> tuple[Counter[str], Counter[str]]:
        """(accepted submits, every submit_sm received) per destination (digits, no +)."""
        snap = self._snapshot()
        accepted = Counter(self._banked_accepted)
        accepted.update(snap["accepted"])
        attempts = Counter(self._banked_attempts)
        attempts.update(snap["attempts"])
        return accepted, attempts

    def smsc_counter(self, key: str) -> int:
        return int(self._snapshot(wait=0).get(key, 0))

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
