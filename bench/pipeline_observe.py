"""What each campaigns replica did during a concurrent pipeline run, seen from outside:
which replica held each campaign's lease in each state (the campaigns table, sampled) and
how often the database's backends waited on a lock or deadlocked, its herald_campaigns_*
counters (its /metrics, before and after), and the builds it logged ("campaign built"
lines). bench/pipeline_replicas.py turns these into rows."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench import herald_stack as hs

# Counters read per replica, each summed over its labels but the one named (None: all summed).
COUNTERS: dict[str, str | None] = {
    "herald_campaigns_builds": "result",
    "herald_campaigns_messages_built": None,
    "herald_campaigns_jobs_published": None,
    "herald_campaigns_ledger_events": None,  # PostgreSQL counts "status_batched": no row counts
    "herald_campaign_messages": "status",
    "herald_campaigns_scheduler_errors": "stage",
}


def _scrape_one(port: int) -> Counter[str]:
    """The COUNTERS of one process as {"name" or "name{label}": value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: Counter[str] = Counter()
    for fam in text_string_to_metric_families(text):
        if fam.name not in COUNTERS:
            continue
        label = COUNTERS[fam.name]
        for s in fam.samples:
            if s.name.endswith("_total"):
                key = fam.name if label is None else f"{fam.name}{{{s.labels.get(label, '')}}}"
                out[key] += s.value
    return out


async def scrape(run: hs.Running) -> dict[str, Counter[str]]:
    """Each campaigns replica's counters now."""
    ports = {n: run.stack.procs[n].info["metrics_port"] for n in run.campaigns_replicas()}
    got = await asyncio.gather(*(asyncio.to_thread(_scrape_one, p) for p in ports.values()))
    return dict(zip(ports, got, strict=True))


def delta(after: dict[str, Counter[str]], before: dict[str, Counter[str]]) -> dict[str, Counter[str]]:
    out = {}
    for name, now in after.items():
        d = Counter(now)
        d.subtract(before.get(name, Counter()))
        out[name] = Counter({k: v for k, v in d.items() if v})
    return out


# --- the replicas' logs ---------------------------------------------------------------------

def log_offsets(run: hs.Running) -> dict[str, int]:
    out = {}
    for name in run.campaigns_replicas():
        with contextlib.suppress(OSError):
            out[name] = run.stack.procs[name].log_path.stat().st_size
    return out


@dataclass
class Logged:
    built: dict[str, list[str]] = field(default_factory=dict)  # replica -> campaign ids built
    resumed: Counter[str] = field(default_factory=Counter)    # replica -> builds taken up again
    kept_rows: Counter[str] = field(default_factory=Counter)  # replica -> rows found already built
    released: dict[str, list[str]] = field(default_factory=dict)  # replica -> leases given up
    errors: dict[str, Counter[str]] = field(default_factory=dict)  # replica -> ERROR lines by kind


def read_logs(run: hs.Running, offsets: dict[str, int]) -> Logged:
    """The JSON log lines each replica wrote since `offsets`."""
    out = Logged()
    for name in run.campaigns_replicas():
        out.built[name], out.errors[name], out.released[name] = [], Counter(), []
        with open(run.stack.procs[name].log_path, "rb") as fh:
            fh.seek(offsets.get(name, 0))
            lines = fh.read().decode(errors="replace").splitlines()
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            msg = rec.get("msg", "")
            if msg == "campaign built":
                out.built[name].append(str(rec.get("campaign_id")))
                out.resumed[name] += rec.get("resumed") is True
            elif msg == "campaign lease released":  # fair share: given up for another replica
                out.released[name].append(str(rec.get("campaign_id")))
            elif msg.startswith("build found ledger rows already written"):
                out.kept_rows[name] += int(rec.get("kept", 0))
            if rec.get("level") in ("ERROR", "CRITICAL"):
                # the error's first line: its type and the database's message, not the SQL
                out.errors[name][f"{msg}: {str(rec.get('error', '')).splitlines()[0][:160]}"] += 1
    return out


# --- leases and locks, sampled from the campaigns database -------------------------------------

@dataclass
class Leases:
    """Per campaign and status, how many samples found each replica holding its lease;
    handovers: the lease moving from one live replica to another while the campaign was
    active (campaign id, from, to, status, time; `unexplained` drops those the first
    replica gave up, as its log says); expired: samples of an active campaign whose lease
    had run out; lock_waits: samples that found a backend of the database waiting on a lock
    (row locks between the ledger and the dispatcher); deadlocks: PostgreSQL's count for the
    database."""
    held: dict[str, dict[str, Counter[str]]] = field(default_factory=dict)
    handovers: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    expired: Counter[str] = field(default_factory=Counter)
    samples: int = 0
    lock_waits: int = 0
    deadlocks: int = 0


DEADLOCKS = "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
LOCK_WAITS = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
              "AND wait_event_type = 'Lock'")


class LeaseWatch:
    """Samples the campaigns' status and lease owner, and the backends waiting on a lock,
    every `interval` seconds. An owner is "<host>:<pid>:<random>": its pid names the
    replica."""

    def __init__(self, run: hs.Running, campaign_ids: list[str], interval: float = 0.25) -> None:
        self.dsn = run.campaigns_db()
        self.ids = campaign_ids
        self.names = {pid: name for name, pid in run.pids().items()}
        self.interval = interval
        self.leases = Leases(held={cid: {} for cid in campaign_ids})
        self._last: dict[str, str] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def replica(self, owner: str) -> str:
        parts = owner.split(":")
        if len(parts) >= 3 and parts[-2].isdigit():
            return self.names.get(int(parts[-2]), owner)
        return owner or "(none)"

    async def start(self) -> LeaseWatch:
        import asyncpg

        conn = await asyncpg.connect(self.dsn, timeout=10)
        self._task = asyncio.create_task(self._run(conn))
        return self

    async def _run(self, conn: Any) -> None:
        try:
            deadlocks = await conn.fetchval(DEADLOCKS)
            while not self._stop.is_set():
                rows = await conn.fetch(
                    "SELECT id, status, lease_owner, lease_until < now() AS expired FROM campaigns "
                    "WHERE id = ANY($1::text[])", self.ids)
                self._note(rows)
                self.leases.lock_waits += bool(await conn.fetchval(LOCK_WAITS))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.interval)
            # the statistics collector publishes a backend's counts when its transaction ends
            await asyncio.sleep(1.0)
            self.leases.deadlocks = await conn.fetchval(DEADLOCKS) - deadlocks
        finally:
            await conn.close()

    def _note(self, rows: list[Any]) -> None:
        lz = self.leases
        lz.samples += 1
        for r in rows:
            cid, status, owner = str(r["id"]), r["status"], self.replica(r["lease_owner"])
            if status not in ("PENDING", "BUILDING", "SENDING", "PAUSED"):
                continue
            lz.held[cid].setdefault(status, Counter())[owner] += 1
            if r["expired"]:
                lz.expired[cid] += 1
            last = self._last.get(cid)
            if last not in (None, "(none)") and owner not in (last, "(none)"):
                lz.handovers.append((cid, last, owner, status, time.strftime("%H:%M:%S")))
            self._last[cid] = owner

    async def stop(self) -> Leases:
        self._stop.set()
        if self._task is not None:
            await self._task
        return self.leases


def unexplained(handovers: list[tuple[str, str, str, str, str]], logged: Logged) -> list[str]:
    """The handovers whose first holder did not log giving the lease up (a release commits
    before the next holder can lease the campaign, and the first stops acting on it)."""
    return [f"{cid[:8]} {old} -> {new} while {status} at {at}"
            for cid, old, new, status, at in handovers if cid not in logged.released.get(old, [])]
