"""ab_build: the campaigns process's memory while it builds an A/B campaign of --ab-build-size
recipients (contacts imported into a category once; each build its own campaign, 50/50 split,
--ab-build-test-percent in the test cell, paused once measured).

Each build runs in a freshly started campaigns process, so its peak resident set (VmHWM) is
the build's: start-up, then PENDING -> BUILDING -> SENDING. With --ab-build-tree DIR (another
checkout of Herald, e.g. `git archive` of an earlier commit), that tree's campaigns process
and this one's build alternately on the same stack, database and contacts, and both columns
are printed: peak RSS, RSS after start-up, build seconds (the BUILDING phase), campaigns
CPU. --ab-build-plain adds a plain campaign of the same audience built by this tree: the
memory of a build that streams its audience, for reference.

    .venv/bin/python -m bench --only ab_build --ab-build-size 100000 --ab-build-plain \
        --ab-build-tree /tmp/herald-before   # git archive <commit> | tar -x -C /tmp/herald-before
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any

from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import common_pb2 as c

from bench import herald_stack as hs
from bench.measure import Watch, row, status_kb
from cli import procs

HERE_TREE = Path(__file__).resolve().parents[1]
VARIANTS = [cpb.Variant(name="A", split_percent=50, content=cpb.Content(text="Hi {{ first_name }}, A")),
            cpb.Variant(name="B", split_percent=50, content=cpb.Content(text="Hi {{ first_name }}, B"))]
PLAIN = "this tree, plain campaign (reference)"


def start_campaigns(running: hs.Running, tree: Path) -> procs.Proc:
    """Stop the stack's campaigns process and start `tree`'s on the same ports and database."""
    stack = running.stack
    old = stack.procs["campaigns"]
    old.stop()
    module, env = stack.modules["campaigns"]
    pinned = {"HERALD_GRPC_ADDR": f"127.0.0.1:{old.info['grpc_port']}",
              "HERALD_METRICS_ADDR": f"127.0.0.1:{old.info['metrics_port']}"}
    ready = stack.workdir / "campaigns.ready"
    ready.unlink(missing_ok=True)
    full_env = {**stack.env(), **env, **stack.module_env.get("campaigns", {}), **pinned,
                "HERALD_READY_FILE": str(ready)}
    log_path = stack.workdir / "campaigns.log"
    with open(log_path, "ab") as fh:
        popen = subprocess.Popen([sys.executable, "-m", module], cwd=tree, stdout=fh, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env={**os.environ, **full_env}, start_new_session=True)
    proc = procs.wait_ready(procs.Proc("campaigns", popen, log_path), ready, 120)
    stack.procs["campaigns"] = proc
    return proc


async def built(log: Path, campaign_id: str, deadline: float) -> None:
    """Wait for the campaigns process's log line saying the build ended: the build is not
    polled through the API, so the measured process does nothing else meanwhile."""
    ends = ("campaign built", "campaign build yielded no messages", "audience refused, campaign failed")
    while time.perf_counter() < deadline:
        text = await asyncio.to_thread(log.read_text, errors="replace")
        for line in text.splitlines()[-50:]:
            if campaign_id in line and any(f'"msg": "{end}"' in line for end in ends):
                return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"campaign {campaign_id}: no end of its build in {log}")


async def one_build(running: hs.Running, category: str, n: int, test_percent: int,
                    ab: bool = True) -> dict[str, Any]:
    """Build one A/B campaign (or, not `ab`, a plain one) in the running campaigns process: its
    VmHWM and the build time. It is paused once built: its held rows are not cancelled (a
    message event each, which the next process's ledger consumer would apply during the next
    build) and its test cell is not sent."""
    pid = running.stack.procs["campaigns"].popen.pid
    rss0 = status_kb(pid, "VmRSS") or 0
    cl = running.clients()
    try:
        cp = await cl.campaigns.CreateCampaign(cpb.CreateCampaignRequest(
            request_id=f"bench-ab-{time.time_ns()}",
            campaign=cpb.Campaign(
                name="bench ab build", channel=c.CHANNEL_SMS, sender="HERALD", auto_start=True,
                category_ids=[category], test_percent=test_percent if ab else 0,
                content=cpb.Content(text="Hi {{ first_name }}"), variants=VARIANTS if ab else [])),
            metadata=hs.MD)
        watch = Watch({"campaigns": pid}, interval=0.05, rss_of="campaigns").start()
        await cl.campaigns.ApproveCampaign(cpb.CampaignActionRequest(id=cp.id, note="bench"), metadata=hs.MD)
        await built(running.stack.procs["campaigns"].log_path, cp.id, time.perf_counter() + max(300.0, n / 200))
        use = watch.stop()
        hwm = status_kb(pid, "VmHWM") or 0
        got = await cl.campaigns.GetCampaign(cpb.GetCampaignRequest(id=cp.id), metadata=hs.MD)
        if got.status != cpb.CAMPAIGN_STATUS_SENDING or got.recipients_count != n:
            raise RuntimeError(f"build ended {cpb.CampaignStatus.Name(got.status)} with "
                               f"{got.recipients_count:,} messages: {got.status_reason}")
        await cl.campaigns.PauseCampaign(cpb.CampaignActionRequest(id=cp.id, note="bench"), metadata=hs.MD)
        return {"hwm_mib": hwm / 1024, "rss0_mib": rss0 / 1024, "build_s": hs.phases(got).get("BUILDING", 0.0),
                "cpu_s": use.cpu.get("campaigns", 0.0), "load": use.load()}
    finally:
        await cl.close()


async def builds(running: hs.Running, trees: list[tuple[str, Path]], n: int, test_percent: int,
                 rounds: int, variants: bool = True) -> tuple[dict[str, list[dict[str, Any]]], str]:
    """Contacts imported once, then `rounds` builds per tree, the trees' order alternated."""
    cl = running.clients()
    try:
        category, took, how = await hs.import_contacts(cl, n)
    finally:
        await cl.close()
    got: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in trees}
    for i in range(rounds):
        for label, tree in (trees if i % 2 == 0 else trees[::-1]):  # neither always goes first
            await asyncio.to_thread(start_campaigns, running, tree)
            r = await one_build(running, category, n, test_percent, ab=variants and label != PLAIN)
            got[label].append(r)
            print(f"ab_build round {i + 1} {label}: peak RSS {r['hwm_mib']:.0f} MiB "
                  f"(after start-up {r['rss0_mib']:.0f}), build {r['build_s']:.1f} s", flush=True)
    return got, f"contacts: {how}, {took:.0f} s"


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    n = args.ab_build_size
    trees = [("this tree", HERE_TREE)]
    if args.ab_build_tree:
        trees.append((f"other tree ({args.ab_build_tree})", Path(args.ab_build_tree).resolve()))
    if args.ab_build_plain:
        trees.append((PLAIN, HERE_TREE))
    with hs.herald(args.ab_build_db) as running:
        got, contacts = asyncio.run(builds(running, trees, n, args.ab_build_test_percent, args.ab_build_rounds,
                                           args.ab_build_variants))
    out = []
    for label, rs in got.items():
        each = ", ".join(f"{r['hwm_mib']:.0f}" for r in rs)
        what = "plain" if label == PLAIN or not args.ab_build_variants else "A/B"
        out.append(row(f"ab_build: campaigns peak RSS, {what} build of {n:,} ({label})",
                       round(median(r["hwm_mib"] for r in rs)), "MiB",
                       f"VmHWM of a fresh process per build, runs {each} MiB; after start-up "
                       f"{median(r['rss0_mib'] for r in rs):.0f} MiB; build (BUILDING) "
                       f"{median(r['build_s'] for r in rs):.1f} s ({n / median(r['build_s'] for r in rs):,.0f} "
                       f"rows/s), campaigns CPU "
                       f"{median(r['cpu_s'] for r in rs):.1f} s; {args.ab_build_db}; {contacts}",
                       rs[-1]["load"]))
    return out


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--ab-build-size", type=int, default=100000, help="ab_build: recipients (goal 1000000)")
    ap.add_argument("--ab-build-test-percent", type=int, default=2, help="ab_build: the test cell")
    ap.add_argument("--ab-build-rounds", type=int, default=2, help="ab_build: builds per tree")
    ap.add_argument("--ab-build-db", default="sqlite", choices=("sqlite", "postgres"), help="ab_build: database")
    ap.add_argument("--ab-build-variants", action=argparse.BooleanOptionalAction, default=True,
                    help="ab_build: A/B campaigns (--no-ab-build-variants: plain ones, for the build's rate)")
    ap.add_argument("--ab-build-plain", action="store_true",
                    help="ab_build: also build a plain campaign of the same audience (the reference)")
    ap.add_argument("--ab-build-tree", default="",
                    help="ab_build: another checkout whose campaigns process builds alternately with this one's")
