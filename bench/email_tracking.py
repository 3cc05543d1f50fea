"""The email bench's tracking figures: wrk (`apt-get install wrk`; skipped when absent) in
a separate process against the open pixel and the click redirect of gateways with nothing
to send; requests/s, p50/p99 latency, gateway CPU per request."""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from bench import email_profile, measure
from bench.email_gateway_runs import (
    TRACKING_KEY,
    cpu_seconds,
    gateway_env,
    load_text,
    start_gateway,
)
from bench.email_jobs import reset_consumer

Rows = list[tuple[str, str, str]]


def wrk(url: str, seconds: int, conns: int) -> tuple[float, str]:
    out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency", url],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"\s50%\s+(\S+)", out)
    p99 = re.search(r"\s99%\s+(\S+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    detail = f"p50 {p50.group(1) if p50 else '?'}, p99 {p99.group(1) if p99 else '?'}"
    if non2xx:
        detail += f", {non2xx.group(1)} non-2xx/3xx"
    return rps, detail


def tracking_runs(gateways: list[tuple[str, str, int]], seconds: int, conns: int,
                  repeat: int = 1, profile: Path | None = None) -> Rows:
    """gateways: (name, tracking url, pid); with several (A/B), runs alternate."""
    from gateways.email import tokens

    signer = tokens.Signer([TRACKING_KEY.encode()])
    mid = str(uuid.uuid4())
    pixel = signer.sign(tokens.Token(kind=tokens.OPEN, message_id=mid, campaign_id="c-bench"))
    click = signer.sign(tokens.Token(kind=tokens.CLICK, message_id=mid, link_index=0,
                                     url="https://www.example.com/news/1"))
    rows = []
    if shutil.which("wrk") is None:
        return [("tracking", "skipped", "wrk not installed (apt-get install wrk)")]
    prof_rows: Rows = []
    for route, path in (("open pixel", f"/o/{pixel}.gif"), ("click redirect", f"/c/{click}")):
        runs: dict[str, list[tuple[float, str, float, str]]] = {g[0]: [] for g in gateways}
        for k in range(max(repeat, 1) + (profile is not None)):  # a profiled run is extra
            for name, url, pid in gateways:
                spy = None
                if profile is not None and k == 0:
                    if name != gateways[-1][0]:
                        continue
                    spy = email_profile.start(pid, profile.with_suffix(f".{route.split()[0]}.txt"))
                c0, m0, t0 = cpu_seconds(pid), measure.machine(), time.perf_counter()
                rps, detail = wrk(url + path, seconds, conns)
                wall = time.perf_counter() - t0
                cpu = cpu_seconds(pid) - c0
                email_profile.stop(spy)
                if spy is not None:
                    prof = profile.with_suffix(f".{route.split()[0]}.txt")  # type: ignore[union-attr]
                    prof_rows.append((f"tracking {route} profiled (py-spy)", f"{rps:,.0f} req/s", ""))
                    prof_rows += email_profile.summary(prof, 15)
                    continue  # a profiled run is slower: not one of the figures
                runs[name].append((rps, detail, cpu / max(rps * seconds, 1),
                                   load_text(m0, measure.machine(), wall, cpu)))
        for name, rs in runs.items():
            rs.sort(key=lambda r: r[0])
            med = rs[len(rs) // 2]
            label = f", {name}" if len(gateways) > 1 else ""
            rows.append((f"tracking {route} (wrk, {conns} conns, separate process{label})",
                         f"{med[0]:,.0f} req/s", f"median of {len(rs)}: {med[1]}; gateway CPU "
                         f"{med[2] * 1e6:,.0f} µs/request ({1 / med[2]:,.0f} req/s per core)"))
            for r in rs:
                rows.append(("  load while measuring", f"{r[0]:,.0f} req/s", f"{r[1]}; {r[3]}"))
    return rows + prof_rows


def tracking_rows(args: argparse.Namespace, work: Path, nats_url: str, redis_url: str, port: int) -> Rows:
    """Gateways with nothing to send (with --email-ab-tree one per tree) under wrk."""
    asyncio.run(reset_consumer(nats_url))
    trees: list[tuple[str, str | None]] = [("this tree", None)]
    if args.email_ab_tree:
        trees.insert(0, (f"tree {args.email_ab_tree}", args.email_ab_tree))
    gws = []
    try:
        for ti, (tname, tree) in enumerate(trees):
            gw = start_gateway(f"email-gateway-tracking{ti}", work,
                               gateway_env(nats_url, redis_url, port), tree)
            gws.append((tname, gw))
        return tracking_runs(
            [(tname, str(gw.info["tracking_url"]), gw.popen.pid) for tname, gw in gws],
            args.email_track_seconds, args.email_track_conns, args.email_repeat,
            work / "track-profile.txt" if args.email_profile else None)
    finally:
        for _, gw in gws:
            gw.stop()
