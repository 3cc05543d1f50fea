"""--pipeline-profile: py-spy on every Herald process of one pipeline run (campaigns,
recipients, stats, the SMPP gateway), each summarised by the areas of the pipeline it works
on (build, dispatch, job publishing, ledger updates from events, stats) and by its
functions' own time. Each area's share of the process's samples is also turned into CPU ms
per message with the process's measured CPU (an estimate: a sample is a moment the thread
was running or waiting to run)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import pyspy
from bench.measure import Usage, row

IDLE = pyspy.IDLE
RATE = 100  # samples per second and process: py-spy pauses the process for each one

# Rules are tried in order, first match wins: the specific ones (an RPC inside the build)
# before the general ones (the build).
CAMPAIGNS: list[pyspy.Rule] = [
    ("build: reading the audience stream (gRPC)", ("write_audience&grpc", "write_audience&_pb2",
                                                    "write_audience&protobuf", "audience_members")),
    ("build: ledger row (preview render, variables, dict)", ("ledger_row",)),
    ("build: insert rows (SQL)", ("insert_rows&add_missing",)),
    ("build: queued events (publish)", ("insert_rows&publish", "announce_built")),
    # shared.bus.publish_many runs each publish as its own task: a request, an inbox reply
    ("events published one request each (bus.publish_many)", ("publish_many.<locals>.one",)),
    ("build: other", ("scheduler/build.py",)),
    ("dispatch: reading waiting messages (SQL)", ("dispatch (&next_to_send", "dispatch (&dispatch_counts")),
    ("dispatch: publishing jobs and sending events", ("dispatch (&publish_many",)),
    ("dispatch: marking dispatched (SQL)", ("mark_dispatched",)),
    ("dispatch: building jobs", ("scheduler/dispatch.py",)),
    ("completion and auto-pause checks", ("scheduler/complete.py",)),
    ("scheduler: lease and other", ("scheduler/",)),
    ("ledger: events -> SQL", ("apply_batch",)),
    ("ledger: fetch, parse, ack", ("ledger.py", "shared/consumer.py", "jsfast")),
    ("NATS client read loop (publish acks, fetched events)", ("Client._read_loop",)),
    ("gRPC API (GetCampaign...)", ("servicer", "grpc")),
    ("SQLAlchemy / aiosqlite (event loop side)", ("sqlalchemy", "aiosqlite")),
    ("asyncio loop", ("leaf:asyncio", "base_events", "asyncio/")),
]
RECIPIENTS: list[pyspy.Rule] = [
    ("audience: category members (SQL)", ("category_members", "duplicated_addresses")),
    ("audience: contact -> Recipient", ("from_contact", "from_inline")),
    ("audience: suppression check (SQL)", ("suppressed",)),
    ("audience: de-dup, members", ("finish",)),
    ("audience: gRPC streaming", ("ResolveAudience", "grpc")),
    ("SQLAlchemy / aiosqlite (event loop side)", ("sqlalchemy", "aiosqlite")),
    ("asyncio loop", ("leaf:asyncio", "base_events", "asyncio/")),
]
STATS: list[pyspy.Rule] = [
    ("stats: applying events (Redis Lua)", ("aggregator",)),
    ("stats: fetch, parse, ack", ("consumer", "jsfast", "nats")),
    ("stats: GetCampaignStats", ("servicer", "grpc")),
    ("redis-py", ("redis",)),
    ("asyncio loop", ("leaf:asyncio", "base_events", "asyncio/")),
]
GATEWAY: list[pyspy.Rule] = [
    ("SMPP codec", ("smpp/pdu.py", "encoding.py")),
    ("receipts", ("receipts.py", "matching.py")),
    ("redis-py (markers, id maps)", ("redis",)),
    ("NATS (fetch, publish, ack)", ("jsfast", "nats")),
    ("protobuf events", ("protobuf", "_pb2", "smpp/events.py")),
    ("asyncio loop / transports", ("leaf:asyncio", "base_events", "asyncio/")),
]
# Threads other than the event loop that do the process's work.
THREADS: list[pyspy.Rule] = [("SQLite (aiosqlite's thread)", ("aiosqlite",)),
                             ("worker threads (to_thread)", ("concurrent/futures",))]


def _wait_line(module: str, function: str, text: str) -> str:
    """"path/file.py:line" of the line of `function` (in an installed module) holding `text`:
    where its thread sits blocked, in C, waiting for work."""
    import importlib
    import inspect

    mod = importlib.import_module(module)
    lines, first = inspect.getsourcelines(getattr(mod, function))
    at = next(first + i for i, line in enumerate(lines) if text in line)
    return f"{module.replace('.', '/')}.py:{at})"


def waits() -> list[str]:
    return [_wait_line("aiosqlite.core", "_connection_worker_thread", "tx.get("),
            _wait_line("concurrent.futures.thread", "_worker", "work_queue.get(block=True)")]


PROCESSES: dict[str, list[pyspy.Rule]] = {"campaigns": CAMPAIGNS, "recipients": RECIPIENTS,
                                          "stats": STATS, "smpp-gateway": GATEWAY}


SQLTIME = Path(__file__).resolve().parent / "sqltime"  # its sitecustomize times aiosqlite's calls


@dataclass
class Profile:
    """What one profiled run found: py-spy tallies by process name, and the CPU seconds
    SQLite spent per statement ({statement: [calls, seconds]}) by process name."""
    tallies: dict[str, pyspy.Tally] = field(default_factory=dict)
    sql: dict[str, dict[str, list[float]]] = field(default_factory=dict)


class Profiling:
    """A stack started with env() times its SQLite statements; recording() runs py-spy on
    each profiled process while its block runs and fills the Profile it yields when the
    block ends. Raw profiles are copied to `keep` (a folder) when given."""

    def __init__(self, keep: Path | None = None) -> None:
        if not pyspy.binary():
            raise RuntimeError("--pipeline-profile needs py-spy (pip install py-spy)")
        self.keep = keep
        self.dir = Path(tempfile.mkdtemp(prefix="herald-profile-"))

    def env(self) -> dict[str, str]:
        path = os.pathsep.join(p for p in (str(SQLTIME), os.environ.get("PYTHONPATH", "")) if p)
        return {"PYTHONPATH": path, "HERALD_BENCH_SQLTIME_DIR": str(self.dir)}

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def _sql(self, pids: dict[str, int]) -> dict[str, dict[str, list[float]]]:
        out = {}
        for name, pid in pids.items():
            with contextlib.suppress(OSError, ValueError):
                out[name] = json.loads((self.dir / f"{pid}.json").read_text())
        return out

    @contextlib.contextmanager
    def recording(self, pids: dict[str, int], run: str) -> Iterator[Profile]:
        prof = Profile()
        wanted = {name: pid for name, pid in pids.items() if name in PROCESSES}
        paths = {name: self.dir / f"{run}-{name}.txt" for name in wanted}
        sql0 = self._sql(wanted)
        spies: list[subprocess.Popen[bytes]] = []
        try:
            spies = [pyspy.record(wanted[name], path, RATE) for name, path in paths.items()]
            yield prof
        finally:
            for spy in spies:
                pyspy.stop(spy)
        time.sleep(1.0)  # the services write their SQL times every half second
        for name, now in self._sql(wanted).items():
            before = sql0.get(name, {})
            prof.sql[name] = {k: [v[0] - before.get(k, [0, 0.0])[0], v[1] - before.get(k, [0, 0.0])[1]]
                              for k, v in now.items()}
        for name, path in paths.items():
            if not path.exists():
                continue
            prof.tallies[name] = pyspy.tally(path, PROCESSES[name], "other", THREADS, waits())
            if self.keep is not None:
                self.keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, self.keep / path.name)


def summary(label: str, prof: Profile, use: Usage, n: int, load: str,
            top: int = 8) -> list[dict[str, Any]]:
    """Rows per process: each area's share of the busy samples (and CPU ms/msg), the
    functions with the most own time, and the statements SQLite spent the most CPU on."""
    out: list[dict[str, Any]] = []
    for name, t in prof.tallies.items():
        busy = t.total - t.area.get(IDLE, 0)
        if busy <= 0:
            continue
        cpu_ms = 1000 * use.cpu.get(name, 0.0) / n
        out.append(row(f"  {label}: profile {name}", round(cpu_ms, 3), "ms/msg",
                       f"{t.total:,} samples at {RATE}/s, {busy:,} busy", load))
        for area, k in t.area.most_common():
            if area != IDLE:
                out.append(row(f"    {name}: {area}", round(100 * k / busy, 1), "%",
                               f"~{cpu_ms * k / busy:.3f} ms CPU/msg", ""))
        leaves = [(f, k) for f, k in t.own.most_common() if "select" not in f and "epoll" not in f]
        own = ", ".join(f"{f} {100 * k / busy:.1f} %" for f, k in leaves[:top])
        out.append(row(f"    {name}: own time (top {top})", "", "", own, ""))
        sql = sorted(prof.sql.get(name, {}).items(), key=lambda kv: -kv[1][1])
        for stmt, (calls, cpu) in [kv for kv in sql if kv[1][1] > 0][:top]:
            out.append(row(f"    {name} SQLite: {stmt[:150]}", round(1000 * cpu / n, 4), "ms/msg",
                           f"{int(calls):,} calls, {1e6 * cpu / max(calls, 1):,.0f} us each", ""))
    return out
