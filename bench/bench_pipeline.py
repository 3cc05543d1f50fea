"""pipeline: Herald end to end. A whole local stack (as `make run`) per database and size:
N contacts imported into a category through the API, an SMS campaign to it approved, and
the clock runs until GetCampaignStats shows all N DELIVERED (campaigns -> JetStream ->
SMPP gateway -> SMSC simulator -> receipts -> ledger + stats).

Per run: msg/s, the time in BUILDING and SENDING and the tail from DONE until stats are
final, CPU ms per message of every process (Herald's, nats-server, redis-server, the
PostgreSQL backends of its databases, and the simulator apart: it is not Herald) and their
peak RSS. Per database: the rate at each size (flat = it scales). The machine's load is
printed with every figure.

--pipeline-profile also records every Herald process with py-spy during the run and the CPU
time SQLite spends per statement in campaigns and recipients (bench/pipeline_profile.py):
each process's areas (build, dispatch, job publishing, ledger updates, stats...) in % and in
CPU ms per message, its functions with the most own time, and its costliest statements.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path
from typing import Any

from bench import herald_stack as hs
from bench import pipeline_profile, pipeline_replicas
from bench.measure import Usage, Watch, fmt, row

HERALD_NOT = ("simulator",)  # watched, reported apart: not part of Herald's CPU per message


def split(u: Usage) -> tuple[float, float]:
    """(Herald's CPU seconds with its servers and database, the simulator's)."""
    sim = sum(v for k, v in u.cpu.items() if k in HERALD_NOT)
    return u.total() - sim, sim


async def _one(run: hs.Running, n: int, args: argparse.Namespace,
               profiling: pipeline_profile.Profiling | None) -> tuple[float, list[dict[str, Any]]]:
    cl = run.clients()
    try:
        cat, took, how = await hs.import_contacts(cl, n, args.import_batch, args.import_concurrency)
        cid = await hs.sms_campaign(cl, cat, f"bench pipeline {n}")
        with contextlib.ExitStack() as es:
            prof = pipeline_profile.Profile()
            if profiling is not None:
                prof = es.enter_context(profiling.recording(run.pids(), f"{run.db}-{n}"))
            watch = Watch(run.pids(), run.pg_names).start()
            cr = await hs.approve_and_follow(cl, cid, n)
            use = watch.stop().group("pg:", "postgres backends")
    finally:
        await cl.close()
    label = f"pipeline {run.db} {n:,}" + (" (profiled)" if profiling is not None else "")
    rate = n / cr.seconds
    herald_cpu, sim_cpu = split(use)
    ph = ", ".join(f"{k} {v:.2f} s" for k, v in cr.phases.items() if k not in ("NEW",))
    load = use.load()
    rows = [
        row(f"{label}: approve -> all DELIVERED in stats", round(rate, 1), "msg/s",
            f"{cr.seconds:.2f} s; DONE after {cr.to_done:.2f} s; {cr.stats.delivered:,} delivered", load),
        row(f"  {label}: phases", round(cr.seconds, 2), "s",
            f"{ph}; tail DONE -> stats final {cr.tail:.2f} s", load),
        row(f"  {label}: Herald CPU per message", round(1000 * herald_cpu / n, 3), "ms/msg",
            f"all Herald processes, nats, redis, database; simulator {1000 * sim_cpu / n:.3f} ms/msg apart; "
            + use.cpu_per(n), load),
        row(f"  {label}: peak RSS", round(max(use.peak_kb.values(), default=0) / 1024), "MiB", use.peaks(), load),
        row(f"  {label}: contact import (before the clock)", round(n / took), "rows/s", how, ""),
    ]
    rows += pipeline_profile.summary(label, prof, use, n, load)
    return rate, rows


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.pipeline_campaigns_replicas:
        return pipeline_replicas.run(args)
    sizes = [int(s) for s in args.pipeline_sizes.split(",") if s]
    out: list[dict[str, Any]] = []
    profiling = None
    if args.pipeline_profile:
        profiling = pipeline_profile.Profiling(Path(args.pipeline_profile_dir) if args.pipeline_profile_dir else None)
    try:
        for db in [d.strip() for d in (args.pipeline_db or "sqlite,postgres").split(",") if d.strip()]:
            out += _sizes(db, sizes, args, profiling)
    finally:
        if profiling is not None:
            profiling.close()
    return out


def _sizes(db: str, sizes: list[int], args: argparse.Namespace,
           profiling: pipeline_profile.Profiling | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    rates = []
    for n in sizes:
        with hs.herald(db, args.receipt_delay, profiling.env() if profiling else None) as running:
            rate, rows = asyncio.run(_one(running, n, args, profiling))
        rates.append(rate)
        out += rows
    if len(sizes) > 1:
        flat = min(rates) / max(rates)
        out.append(row(f"pipeline {db}: rate flatness (slowest / fastest size)", round(flat, 2), "x",
                       ", ".join(f"{n:,}: {fmt(r)} msg/s" for n, r in zip(sizes, rates, strict=True))
                       + " (1.0 = the rate does not fall with size)"))
    return out


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--pipeline-sizes", default="100000",
                    help="pipeline: recipients per campaign, comma-separated (goal: 10000,100000,1000000)")
    ap.add_argument("--pipeline-db", default="",
                    help="pipeline: databases (sqlite, postgres; default both, postgres alone with "
                         "--pipeline-campaigns-replicas)")
    ap.add_argument("--receipt-delay", type=float, default=0.01,
                    help="pipeline, kannel: the SMSC simulator's receipt delay (seconds)")
    ap.add_argument("--import-batch", type=int, default=5000, help="contacts per UpsertContacts call")
    ap.add_argument("--pipeline-profile", action="store_true",
                    help="pipeline: py-spy every Herald process during each run and print where each "
                         "spends its time (the profiled runs are a little slower)")
    ap.add_argument("--pipeline-profile-dir", default="",
                    help="pipeline: keep the raw py-spy profiles here (<dir>/<db>-<size>-<process>.txt)")
    ap.add_argument("--import-concurrency", type=int, default=2, help="UpsertContacts calls in flight")
    ap.add_argument("--pipeline-campaigns-replicas", default="",
                    help="pipeline: campaigns processes per run, comma-separated and alternated "
                         "(e.g. 1,2), on PostgreSQL, with --pipeline-concurrent campaigns of "
                         "size / N recipients each approved at once")
    ap.add_argument("--pipeline-concurrent", type=int, default=4,
                    help="pipeline with --pipeline-campaigns-replicas: SMS campaigns approved at once")
    ap.add_argument("--pipeline-rounds", type=int, default=2,
                    help="pipeline with --pipeline-campaigns-replicas: runs of each replica count "
                         "(alternated)")
