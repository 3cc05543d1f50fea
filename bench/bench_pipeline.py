"""pipeline: a whole local stack (as `make run`), one SMS campaign of --sms recipients and one
email campaign of --email contacts; time from approval to DONE and to the last receipt
in stats, i.e. end-to-end messages per second through campaigns -> JetStream -> gateway ->
SMSC simulator / SMTP sink -> receipts -> ledger + stats.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from herald.v1 import campaigns_pb2 as cpb

from cli import demo
from cli.devstack import Stack

ROOT = Path(__file__).resolve().parents[1]


def phases(label: str, cp: cpb.Campaign) -> list[tuple[str, str, str]]:
    """Time spent in each state, from the campaign's state history."""
    out = []
    hist = list(cp.history)
    for a, b in zip(hist, hist[1:], strict=False):
        if a.status == b.status:
            continue
        dt = (b.at.ToNanoseconds() - a.at.ToNanoseconds()) / 1e9
        name = cpb.CampaignStatus.Name(a.status).removeprefix("CAMPAIGN_STATUS_")
        out.append((f"  {label} time in {name}", f"{dt:.2f} s", ""))
    return out


async def pipeline(stack: Stack, sms_n: int, email_n: int) -> list[tuple[str, str, str]]:
    cl = demo.Clients.connect(stack.addr("campaigns"), stack.addr("recipients"), stack.addr("stats"))
    rows = []
    try:
        t0 = time.perf_counter()
        sid = await demo.sms_campaign(cl, sms_n)
        cp = await demo.wait_terminal(cl, sid, timeout=600)
        t_done = time.perf_counter() - t0
        st = await demo.wait_stats(cl, sid, lambda s: s.delivered >= sms_n, timeout=120)
        t_stats = time.perf_counter() - t0
        rows.append(("SMS campaign approve -> DONE", f"{t_done:.2f} s",
                     f"{sms_n / t_done:,.0f} msg/s ({cpb.CampaignStatus.Name(cp.status)})"))
        rows.extend(phases("SMS", cp))
        rows.append(("SMS approve -> all DELIVERED in stats", f"{t_stats:.2f} s",
                     f"{st.delivered / t_stats:,.0f} msg/s"))
        t0 = time.perf_counter()
        eid = await demo.email_campaign(cl, email_n)
        cp = await demo.wait_terminal(cl, eid, timeout=600)
        t_done = time.perf_counter() - t0
        rows.append(("email campaign create -> DONE", f"{t_done:.2f} s",
                     f"{email_n / t_done:,.0f} msg/s ({cpb.CampaignStatus.Name(cp.status)})"))
        rows.extend(phases("email", cp))
    finally:
        await cl.close()
    return rows


def run(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp))
        stack.start()
        try:
            return asyncio.run(pipeline(stack, args.sms, args.email))
        finally:
            stack.stop()


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--sms", type=int, default=1000, help="pipeline: SMS recipients (<= 1000)")
    ap.add_argument("--email", type=int, default=1000, help="pipeline: email contacts")
