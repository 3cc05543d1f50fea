"""What every bench measures the same way: the CPU time and peak memory of processes
(/proc), the machine's load while a figure was taken, and the rows the table prints.

The machine's cores are shared by everything on it, so each figure carries the load it was
taken under: a rate is only comparable with another taken under a similar load.
"""

from __future__ import annotations

import os
import re
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TICK = os.sysconf("SC_CLK_TCK")
CORES = len(os.sched_getaffinity(0))


def row(name: str, value: float | str, unit: str = "", detail: str = "", load: str = "") -> dict[str, Any]:
    """One figure of the table and of bench/results.json."""
    return {"name": name, "value": value, "unit": unit, "detail": detail, "load": load}


def fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:,.1f}"
    return f"{value:,.3g}"


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process so far, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def status_kb(pid: int, key: str) -> int | None:
    """A kB field of /proc/<pid>/status (VmHWM: peak resident set; VmRSS: now)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def machine() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (/proc/stat)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = f[3] + f[4]
    return (sum(f) - idle) / TICK, sum(f) / TICK


def pg_backends(databases: set[str]) -> dict[str, int]:
    """PostgreSQL backend processes serving the given databases, by /proc scan (their
    command line reads "postgres: [<cluster>: ]<user> <database> <client> <state>"). The
    server's shared processes (WAL writer, checkpointer) serve every database: not counted."""
    out: dict[str, int] = {}
    if not databases:
        return out
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        m = re.match(r"postgres: (?:\S+: )?\S+ (\S+) ", cmd)
        if m and m.group(1) in databases:
            out[f"pg:{m.group(1)}:{d.name}"] = int(d.name)
    return out


@dataclass
class Usage:
    """CPU seconds used and peak RSS (kB) of each watched process over a span of time."""
    wall: float
    cpu: dict[str, float]
    peak_kb: dict[str, int]
    busy: float  # CPU seconds the whole machine was busy (all processes, ours or not)

    def group(self, prefix: str, label: str) -> Usage:
        """Processes whose name starts with `prefix` summed as one (e.g. PostgreSQL backends)."""
        cpu = {k: v for k, v in self.cpu.items() if not k.startswith(prefix)}
        peak = {k: v for k, v in self.peak_kb.items() if not k.startswith(prefix)}
        grouped = [k for k in self.cpu if k.startswith(prefix)]
        if grouped:
            cpu[label] = sum(self.cpu[k] for k in grouped)
            peak[label] = max(self.peak_kb.get(k, 0) for k in grouped)
        return Usage(self.wall, cpu, peak, self.busy)

    def total(self, names: list[str] | None = None) -> float:
        return sum(v for k, v in self.cpu.items() if names is None or k in names)

    def load(self) -> str:
        """The machine's load over the span: how much else competed for the cores."""
        ours = self.total()
        w = max(self.wall, 1e-9)
        return (f"machine {self.busy / w:.2f} of {CORES} cores busy (measured processes "
                f"{ours / w:.2f}, rest {max(0.0, self.busy - ours) / w:.2f}); "
                f"loadavg {os.getloadavg()[0]:.2f}")

    def cpu_per(self, n: int) -> str:
        """CPU milliseconds per item of each process, largest first."""
        parts = sorted(self.cpu.items(), key=lambda kv: -kv[1])
        return ", ".join(f"{k} {1000 * v / n:.3f}" for k, v in parts if v > 0) + " ms CPU/msg"

    def peaks(self) -> str:
        parts = sorted(self.peak_kb.items(), key=lambda kv: -kv[1])
        return ", ".join(f"{k} {v / 1024:.0f}" for k, v in parts if v) + " MiB peak RSS (VmHWM)"


@dataclass
class Watch:
    """Samples the CPU time and memory of processes from start() to stop(), in a thread:
    a process that exits (or a database backend that closes) meanwhile keeps its last
    sample, and backends that open meanwhile are picked up (pg_databases)."""
    pids: dict[str, int]
    pg_databases: set[str] = field(default_factory=set)
    interval: float = 0.25
    rss_of: str = ""  # sample VmRSS of this process too: its peak during the span
    _first: dict[str, float] = field(default_factory=dict)
    _last: dict[str, float] = field(default_factory=dict)
    _peak: dict[str, int] = field(default_factory=dict)
    rss_peak_kb: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self) -> None:
        pids = dict(self.pids)
        pids.update(pg_backends(self.pg_databases))
        for name, pid in pids.items():
            cpu = cpu_seconds(pid)
            if cpu is None:
                continue
            # a backend first seen mid-span started after the span began: all its CPU counts
            self._first.setdefault(name, cpu if self._thread is None else 0.0)
            self._last[name] = cpu
            hwm = status_kb(pid, "VmHWM")
            if hwm:
                self._peak[name] = max(self._peak.get(name, 0), hwm)
        if self.rss_of and self.rss_of in pids:
            self.rss_peak_kb = max(self.rss_peak_kb, status_kb(pids[self.rss_of], "VmRSS") or 0)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> Watch:
        self._t0, self._m0 = time.perf_counter(), machine()
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Usage:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        wall = time.perf_counter() - self._t0
        busy = machine()[0] - self._m0[0]
        cpu = {k: self._last[k] - self._first.get(k, 0.0) for k in self._last}
        return Usage(wall, cpu, dict(self._peak), busy)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
