"""py-spy raw profiles summarised the same way by every bench: the event-loop thread's
samples by area (first matching rule) and its functions by own (leaf) time; and py-spy
started on, and stopped from, running processes."""

from __future__ import annotations

import collections
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# area label, substrings of the stack that select it: "leaf:..." looks at the leaf frame
# only, "a&b" needs both parts
Rule = tuple[str, Sequence[str]]
IDLE = "idle (epoll wait)"  # samples whose leaf waits in select/epoll


def _matches(needle: str, stack: str, leaf: str) -> bool:
    return all(p[5:] in leaf if p.startswith("leaf:") else p in stack for p in needle.split("&"))


@dataclass
class Tally:
    """Samples of one raw profile: by area, by leaf function, in all."""
    area: collections.Counter[str]
    own: collections.Counter[str]
    total: int


def tally(path: Path, rules: Sequence[Rule], rest: str, threads: Sequence[Rule] = (),
          waits: Sequence[str] = ()) -> Tally:
    """Samples by area. Other threads than the event loop are left out (the metrics HTTP
    server and gRPC threads: py-spy counts them as active while they sit in select(); /proc
    shows they use no CPU during the runs), except those a `threads` rule names (e.g. the
    thread a database driver runs its queries in), counted under that rule's label unless
    their leaf frame is one of `waits` ("file.py:line" where such a thread blocks on its
    queue in C, which py-spy cannot tell from work)."""
    own: collections.Counter[str] = collections.Counter()
    area: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        label = ""
        if "Thread._bootstrap" in stack:
            label = next((lb for lb, needles in threads if any(_matches(n, stack, leaf) for n in needles)), "")
            if not label or any(w in leaf for w in waits):
                continue
        k = int(count)
        total += k
        own[leaf.split(" (")[0] + " (" + leaf.split("(")[-1].split(":")[0].rsplit("/", 1)[-1]] += k
        if "select" in leaf or "epoll" in leaf:
            area[IDLE] += k
            continue
        if not label:
            label = next((lb for lb, needles in rules if any(_matches(n, stack, leaf) for n in needles)), rest)
        area[label] += k
    return Tally(area, own, total)


def summarise(path: Path, rules: Sequence[Rule], rest: str, top: int = 12) -> list[tuple[str, str, str]]:
    t = tally(path, rules, rest)
    if not t.total:
        return []
    rows = [(f"  profile: {name}", f"{100 * k / t.total:.1f} %", "") for name, k in t.area.most_common()]
    rows += [(f"  own time: {name}", f"{100 * k / t.total:.1f} %", "") for name, k in t.own.most_common(top)]
    return rows


def binary() -> str:
    """py-spy on PATH or beside this interpreter (the venv), else ""."""
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent)) or ""


def record(pid: int, out: Path, rate: int = 100) -> subprocess.Popen[bytes]:
    """py-spy recording a running process into `out` (raw format) until stop(). It samples
    from outside but pauses the process for each sample: profiled runs are a little slower."""
    return subprocess.Popen([binary(), "record", "--format", "raw", "-o", str(out), "-r", str(rate),
                             "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(spy: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Ask py-spy to write its profile (SIGINT) and wait for it."""
    spy.send_signal(signal.SIGINT)
    try:
        spy.wait(timeout)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait()
