"""py-spy raw profiles summarised the same way by every bench: the event-loop thread's
samples by area (first matching rule) and its functions by own (leaf) time."""

from __future__ import annotations

import collections
from collections.abc import Sequence
from pathlib import Path

# area label, substrings of the stack that select it ("leaf:..." looks at the leaf frame only)
Rule = tuple[str, Sequence[str]]


def summarise(path: Path, rules: Sequence[Rule], rest: str, top: int = 12) -> list[tuple[str, str, str]]:
    own: collections.Counter[str] = collections.Counter()
    area: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        if "Thread._bootstrap" in stack:
            # The metrics HTTP server and gRPC threads: py-spy counts them as active while
            # they sit in select(); /proc shows they use no CPU during the runs.
            continue
        k = int(count)
        total += k
        leaf = stack.rsplit(";", 1)[-1]
        own[leaf.split(" (")[0] + " (" + leaf.split("(")[-1].split(":")[0].rsplit("/", 1)[-1]] += k
        if "select" in leaf or "epoll" in leaf:
            area["idle (epoll wait)"] += k
            continue
        for label, needles in rules:
            if any(n[5:] in leaf if n.startswith("leaf:") else n in stack for n in needles):
                area[label] += k
                break
        else:
            area[rest] += k
    if not total:
        return []
    rows = [(f"  profile: {name}", f"{100 * k / total:.1f} %", "") for name, k in area.most_common()]
    rows += [(f"  own time: {name}", f"{100 * k / total:.1f} %", "") for name, k in own.most_common(top)]
    return rows
