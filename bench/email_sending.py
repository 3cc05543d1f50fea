"""The email bench's send figures: emails/s and gateway CPU per email against the fast
sink (repeated, variants alternating, optionally one run profiled), with DKIM keys, and
against the aiosmtpd dev sink."""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

from bench import email_profile
from bench.email_gateway_runs import sending_run
from bench.email_keys import ed25519_pem
from cli import procs

ROOT = Path(__file__).resolve().parents[1]
Rows = list[tuple[str, str, str]]
Variant = tuple[str, dict[str, str], str | None]  # name, gateway env, tree (None: this one)


def variants(args: argparse.Namespace) -> list[Variant]:
    """--email-consumer both and --email-ab-tree: every combination, run alternately."""
    found: list[Variant] = [
        (f"consumer {kind}", {"HERALD_EMAIL_CONSUMER": kind}, None)
        for kind in (["nats", "jsfast"] if args.email_consumer == "both" else [args.email_consumer])]
    if args.email_ab_tree:
        found = [(f"{name}, {tree_name}", env, tree)
                 for name, env, _ in found
                 for tree_name, tree in ((f"tree {args.email_ab_tree}", args.email_ab_tree),
                                         ("this tree", None))]
    return found


def plain_rows(args: argparse.Namespace, work: Path, nats_url: str, redis_url: str, port: int) -> Rows:
    """Repeated: other work on the machine moves single runs by +-30 %; the median is
    reported with the spread and the load of every run. Variants run alternately, so
    each sees the same machine conditions."""
    n, pool = args.email_jobs, args.email_pool
    rows: Rows = []
    all_variants = variants(args)
    all_runs: dict[str, list[tuple[float, float, str]]] = {v[0]: [] for v in all_variants}
    profiled = False
    profile_rows: Rows = []
    for k in range(max(args.email_repeat, 1)):
        for vi, (name, env, tree) in enumerate(all_variants):
            prof = None
            if args.email_profile and not profiled and tree is None:
                prof, profiled = work / "send-profile.txt", True
            run = sending_run(work, nats_url, redis_url, n, port, pool, env, f"plain-{vi}-{k}", prof, tree)
            all_runs[name].append((n / run.seconds, run.cpu / n, run.load))
            if prof is not None and prof.exists():
                keep = ROOT / "bench" / "results" / f"email-send-profile-{int(time.time())}.txt"
                keep.parent.mkdir(exist_ok=True)
                shutil.copy(prof, keep)
                profile_rows = [("send run profiled (py-spy, that run's figure is lower)",
                                 f"{n / run.seconds:,.0f} msg/s", str(keep.relative_to(ROOT)))]
                profile_rows += email_profile.summary(prof)
    for name, runs in all_runs.items():
        if not runs:
            continue
        rates = sorted(r[0] for r in runs)
        cpus = sorted(r[1] for r in runs)
        rate, per = statistics.median(rates), statistics.median(cpus)
        rows.append((f"emails/s, one gateway -> fast sink ({n:,} jobs pre-loaded, pool {pool}, "
                     f"{name})",
                     f"{rate:,.0f} msg/s",
                     f"median of {len(runs)} (runs {', '.join(f'{r:,.0f}' for r in rates)}); "
                     "8 KB HTML, 12 tracked links, VERP, no DKIM"))
        rows.append(("  gateway CPU per email (-> emails/s per fully used core)",
                     f"{per * 1e6:,.0f} µs", f"{1 / per:,.0f} msg/s per core (runs "
                     f"{', '.join(f'{c * 1e6:,.0f}' for c in cpus)} µs)"))
        for r in runs:
            rows.append(("  load while sending", f"{r[0]:,.0f} msg/s", r[2]))
    return rows + profile_rows


def dkim_rows(args: argparse.Namespace, work: Path, nats_url: str, redis_url: str, port: int,
              rsa_key: bytes) -> Rows:
    rows: Rows = []
    m = max(args.email_jobs // 4, 1000)
    for algorithm, file_name, label, key in (("RSA-2048", "dkim.pem", "dkim", rsa_key),
                                             ("Ed25519", "dkim-ed.pem", "dkim-ed", None)):
        key_file = work / file_name
        key_file.write_bytes(key if key is not None else ed25519_pem())
        run = sending_run(work, nats_url, redis_url, m, port, args.email_pool,
                          {"HERALD_DKIM_KEY_FILE": str(key_file)}, label)
        rows.append((f"emails/s with DKIM {algorithm}", f"{m / run.seconds:,.0f} msg/s",
                     f"{m:,} jobs; {m / run.cpu:,.0f} msg/s per core"))
    return rows


def aiosmtpd_rows(args: argparse.Namespace, work: Path, nats_url: str, redis_url: str) -> Rows:
    m = max(args.email_jobs // 4, 1000)
    aio = procs.start_module("email-sink", "gateways.email.sink", work,
                             {"HERALD_SINK_DIR": str(work / "mail")})
    try:
        run = sending_run(work, nats_url, redis_url, m, int(aio.info["smtp_port"]),
                          args.email_pool, {}, "aiosmtpd")
    finally:
        aio.stop()
    return [("emails/s to the aiosmtpd dev sink (.eml files)", f"{m / run.seconds:,.0f} msg/s",
             f"{m:,} jobs; the sink process is the limit here")]
