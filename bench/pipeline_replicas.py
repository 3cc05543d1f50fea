"""pipeline --pipeline-campaigns-replicas 1,2 --pipeline-concurrent K: the campaigns service
scaled out on PostgreSQL. One stack per run with R campaigns processes on the same database
(replicas share campaigns by lease, FOR UPDATE SKIP LOCKED, each about its fair share,
and the ledger's durable consumers); K SMS campaigns of size/K recipients each (distinct numbers), approved at once,
campaign i approved and followed through replica i mod R (as a load balancer spreads calls).
The clock runs from the approvals until every campaign is DELIVERED in stats.

Runs alternate between the replica counts (round 1: 1, 2; round 2: 1, 2...) so a change in
the machine's load hits both; the summary quotes medians. Per run: msg/s, per replica its
CPU ms per message (of all the run's messages: the replicas' figures add up to the
service's), peak RSS, the campaigns it built (its log) and held while sending (lease
samples), jobs it published and ledger events it applied (its counters); and the checks a
second replica could break: rows built, jobs published and SMS accepted by the simulator
once per message, no duplicate submit, one build per campaign, no lease handed over while a
replica still worked on it (a lease its holder gave up for the fair share, as its log says,
is handed over after the holder stopped)."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from bench import herald_stack as hs
from bench import pipeline_observe as obs
from bench.measure import Usage, Watch, median, row

PG_GROUP = "postgres backends"


@dataclass
class Run:
    replicas: int
    rate: float
    campaigns_cpu: float    # ms/msg, every replica
    herald_cpu: float       # ms/msg, every process but the simulator
    pg_cpu: float           # ms/msg, the PostgreSQL backends of the run's databases
    load: str
    defects: list[str]
    errors: int             # ERROR lines the replicas logged
    deadlocks: int          # PostgreSQL's count for the campaigns database
    rows: list[dict[str, Any]]


def _label(replicas: int, k: int, per: int) -> str:
    return f"pipeline postgres {k} x {per:,} SMS, {replicas} campaigns replica{'s' if replicas > 1 else ''}"


async def _campaigns(run: hs.Running, k: int, per: int, args: argparse.Namespace) -> list[str]:
    """k categories of per contacts each (distinct numbers), one SMS campaign to each."""
    cl = run.clients()
    try:
        ids = []
        for i in range(k):
            cat, _took, _how = await hs.import_contacts(cl, per, args.import_batch, args.import_concurrency,
                                                        first=i * per)
            ids.append(await hs.sms_campaign(cl, cat, f"bench concurrent {i + 1}/{k}"))
        return ids
    finally:
        await cl.close()


async def _one(run: hs.Running, k: int, per: int, args: argparse.Namespace) -> Run:
    names = run.campaigns_replicas()
    ids = await _campaigns(run, k, per, args)
    clients = {n: run.clients(n) for n in names}
    try:
        before, offsets = await obs.scrape(run), obs.log_offsets(run)
        leases = await obs.LeaseWatch(run, ids).start()
        watch = Watch(run.pids(), run.pg_names).start()
        t0 = time.perf_counter()
        done = await asyncio.gather(*(hs.approve_and_follow(clients[names[i % len(names)]], cid, per)
                                      for i, cid in enumerate(ids)))
        wall = time.perf_counter() - t0
        use = watch.stop().group("pg:", PG_GROUP)
        held = await leases.stop()
        counters = obs.delta(await obs.scrape(run), before)
    finally:
        for cl in clients.values():
            await cl.close()
    logged = obs.read_logs(run, offsets)
    total = k * per
    label = _label(len(names), k, per)
    load = use.load()
    short = {cid: f"#{i + 1}" for i, cid in enumerate(ids)}
    rate = total / wall
    slowest = ", ".join(f"{short[c.campaign_id]} {c.seconds:.1f} s (building {c.phases.get('BUILDING', 0):.1f})"
                        for c in done)
    rows = [row(f"{label}: approve -> all DELIVERED in stats", round(rate, 1), "msg/s",
                f"{total:,} messages in {wall:.1f} s; per campaign {slowest}", load)]
    rows += _replica_rows(names, use, counters, logged, held, short, total, load)
    defects = _checks(run, names, counters, logged, held, total, k)
    errors = {n: dict(v) for n, v in logged.errors.items() if v}
    rows.append(row(f"  {label}: checks", "DEFECT" if defects else "ok", "",
                    "; ".join(defects) if defects else _check_detail(counters, run, total, held, logged), load))
    rows.append(row(f"  {label}: ERROR lines logged", sum(sum(v.values()) for v in errors.values()), "lines",
                    str(errors) if errors else "none", load))
    rows.append(row(f"  {label}: PostgreSQL deadlocks", held.deadlocks, "",
                    f"a backend of the campaigns database waited on a lock in {held.lock_waits} of "
                    f"{held.samples} samples ({100 * held.lock_waits / max(held.samples, 1):.0f} %, every "
                    f"0.25 s); a deadlock is detected after deadlock_timeout (1 s by default)", load))
    herald = use.total() - use.cpu.get("simulator", 0.0)
    camp = sum(use.cpu.get(n, 0.0) for n in names)
    return Run(len(names), rate, 1000 * camp / total, 1000 * herald / total,
               1000 * use.cpu.get(PG_GROUP, 0.0) / total, load, defects,
               sum(sum(v.values()) for v in logged.errors.values()), held.deadlocks, rows)


def _replica_rows(names: list[str], use: Usage, counters: dict[str, Counter[str]], logged: obs.Logged,
                  held: obs.Leases, short: dict[str, str], total: int, load: str) -> list[dict[str, Any]]:
    label = "  campaigns replica"
    events_all = sum(counters[n]["herald_campaigns_ledger_events"] for n in names) or 1
    out = []
    for n in names:
        c = counters[n]
        sending = {short[cid]: st["SENDING"][n] for cid, st in held.held.items() if st.get("SENDING", {}).get(n)}
        samples = {short[cid]: sum(st["SENDING"].values()) for cid, st in held.held.items() if "SENDING" in st}
        sent = ", ".join(f"{s} ({100 * k / max(samples[s], 1):.0f} % of samples)" for s, k in sorted(sending.items()))
        events = c["herald_campaigns_ledger_events"]
        out.append(row(
            f"{label} {n}: CPU per message", round(1000 * use.cpu.get(n, 0.0) / total, 3), "ms/msg",
            f"of all {total:,} messages; peak RSS {use.peak_kb.get(n, 0) / 1024:.0f} MiB; "
            f"built {', '.join(short.get(x, x[:8]) for x in logged.built[n]) or 'none'}; "
            f"leased while SENDING: {sent or 'none'}; leases given up "
            f"{len(logged.released.get(n, []))}; jobs published {c['herald_campaigns_jobs_published']:,.0f}; "
            f"ledger events handled {events:,.0f} ({100 * events / events_all:.0f} %), "
            f"final outcomes counted {c['herald_campaign_messages{delivered}']:,.0f}", load))
    out.append(row("  campaigns service (all replicas) + its database: CPU per message",
                   round(1000 * sum(use.cpu.get(n, 0.0) for n in names) / total, 3), "ms/msg",
                   f"PostgreSQL backends {1000 * use.cpu.get(PG_GROUP, 0.0) / total:.3f} ms/msg apart; "
                   f"every process: {use.cpu_per(total)}", load))
    return out


def _sum(counters: dict[str, Counter[str]], key: str) -> float:
    return sum(c[key] for c in counters.values())


def _checks(run: hs.Running, names: list[str], counters: dict[str, Counter[str]], logged: obs.Logged,
            held: obs.Leases, total: int, k: int) -> list[str]:
    """What two replicas must not do: build or send a message twice, build a campaign twice,
    hand a lease over while its holder still works, leave a lease expired on an active
    campaign."""
    out = []
    built = _sum(counters, "herald_campaigns_messages_built")
    if built != total:
        out.append(f"ledger rows built {built:,.0f} for {total:,} messages")
    published = _sum(counters, "herald_campaigns_jobs_published")
    if published != total:
        out.append(f"jobs published {published:,.0f} for {total:,} messages")
    builds = sum(len(v) for v in logged.built.values())
    if builds != k:
        out.append(f"{builds} builds logged for {k} campaigns: {logged.built}")
    kept = sum(logged.kept_rows.values())
    if kept:
        out.append(f"a build found {kept:,} rows already written (another replica built them)")
    sim = run.smsc()
    if sim.get("submits_accepted", total) != total or sim.get("duplicate_submits", 0):
        out.append(f"SMSC accepted {sim.get('submits_accepted')} submits for {total:,} messages, "
                   f"{sim.get('duplicate_submits')} duplicates")
    handovers = obs.unexplained(held.handovers, logged)
    if handovers:
        out.append(f"lease handed over while active, not given up: {'; '.join(handovers[:6])}")
    stuck = {k: v for k, v in held.expired.items() if v > 8}  # 2 s past a lease's end
    if stuck:
        out.append(f"active campaigns with an expired lease for > 2 s (samples): {stuck}")
    return out


def _check_detail(counters: dict[str, Counter[str]], run: hs.Running, total: int, held: obs.Leases,
                  logged: obs.Logged) -> str:
    sim = run.smsc()
    given = sum(len(v) for v in logged.released.values())
    return (f"rows built {_sum(counters, 'herald_campaigns_messages_built'):,.0f}, jobs published "
            f"{_sum(counters, 'herald_campaigns_jobs_published'):,.0f}, SMSC accepted "
            f"{sim.get('submits_accepted', 0):,} ({sim.get('duplicate_submits', 0)} duplicates) for "
            f"{total:,} messages; one build per campaign; no lease handed over but "
            f"{len(held.handovers)} given up first ({given} released, {held.samples} lease samples)")


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    counts = [int(x) for x in args.pipeline_campaigns_replicas.split(",") if x.strip()]
    dbs = [d.strip() for d in (args.pipeline_db or "postgres").split(",") if d.strip()]
    if dbs != ["postgres"]:
        raise SystemExit("--pipeline-campaigns-replicas runs on PostgreSQL only: SQLite has a single "
                         "writer, so the campaigns service runs one replica on it (--pipeline-db postgres)")
    if args.pipeline_profile:
        raise SystemExit("--pipeline-profile profiles the single-campaign runs only: run it without "
                         "--pipeline-campaigns-replicas")
    k = args.pipeline_concurrent
    sizes = [int(s) for s in args.pipeline_sizes.split(",") if s]
    out: list[dict[str, Any]] = []
    for size in sizes:
        per = size // k
        runs: list[Run] = []
        for _round in range(args.pipeline_rounds):
            for r in counts:
                with hs.herald("postgres", args.receipt_delay, campaigns_replicas=r) as running:
                    one = asyncio.run(_one(running, k, per, args))
                runs.append(one)
                out += one.rows
        out += summary(runs, k, per)
    return out


def summary(runs: list[Run], k: int, per: int) -> list[dict[str, Any]]:
    """Medians per replica count, and each count's rate against the smallest count's."""
    out = []
    by: dict[int, list[Run]] = {}
    for r in runs:
        by.setdefault(r.replicas, []).append(r)
    base = median([r.rate for r in by[min(by)]])
    for n, rs in sorted(by.items()):
        rate = median([r.rate for r in rs])
        out.append(row(
            f"{_label(n, k, per)}: median of {len(rs)}", round(rate, 1), "msg/s",
            f"x{rate / base:.2f} the rate with {min(by)}; runs {', '.join(f'{r.rate:,.0f}' for r in rs)} msg/s; "
            f"campaigns CPU {median([r.campaigns_cpu for r in rs]):.3f} ms/msg, PostgreSQL "
            f"{median([r.pg_cpu for r in rs]):.3f}, whole stack {median([r.herald_cpu for r in rs]):.3f} "
            f"(medians); defects in {sum(bool(r.defects) for r in rs)} of {len(rs)} runs; deadlocks "
            f"{', '.join(str(r.deadlocks) for r in rs)}; ERROR lines {', '.join(str(r.errors) for r in rs)}",
            " | ".join(r.load for r in rs)))
    return out
