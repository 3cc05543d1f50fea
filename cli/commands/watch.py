"""`herald watch <id>`: a live progress bar and counters from StatsService.WatchCampaignStats.
The stream itself ends once the campaign's figures are final (terminal status, nothing in
flight); a stream that ends without a final snapshot (a stats pod restarted) is reopened."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import stats_pb2 as spb
from rich.console import Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from cli.connect import Clients
from cli.output import Output, enum, to_dict

COUNTERS = ("sent", "delivered", "failed", "queued", "sending", "submitted", "deferred", "opted_out")
REOPEN_DELAY = 1.0  # seconds before a stream that ended without a final snapshot is reopened


def counters_line(status: str, st: spb.CampaignStats) -> str:
    rest = "  ".join(f"{k.replace('_', ' ')} {getattr(st, k)}" for k in COUNTERS if getattr(st, k)
                     or k in ("sent", "delivered", "failed"))
    return f"{status}  processed {st.processed}/{st.total}  {rest}"


class View:
    """One of three renderings: a live bar (terminal), a line per update (pipe, log), or
    a JSON object per line (--json)."""

    def __init__(self, out: Output, campaign_id: str) -> None:
        self.out = out
        self.live_mode = not out.json and out.console.is_terminal
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                            console=out.console)
        self.task = self.bar.add_task("sent", total=None)
        self.text = Text()
        self.live: Live | None = None

    def __enter__(self) -> View:
        if self.live_mode:
            self.live = Live(Group(self.bar, self.text), console=self.out.console,
                             refresh_per_second=4, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def update(self, st: spb.CampaignStats, status: int) -> None:
        if self.out.json:
            self.out.emit({"campaignId": st.campaign_id, "status": cpb.CampaignStatus.Name(status),
                           "final": st.final, "stats": to_dict(st)}, line=True)
        elif self.live is not None:
            self.bar.update(self.task, total=st.total or None, completed=st.processed)
            self.text.plain = counters_line(enum(cpb.CampaignStatus.Name(status)), st)
            self.live.refresh()
        else:
            self.out.print(counters_line(enum(cpb.CampaignStatus.Name(status)), st), soft_wrap=True,
                           highlight=False)


async def follow(cl: Clients, view: View, cp: cpb.Campaign, interval: float) -> spb.CampaignStats:
    """Shows every snapshot of the stream until the final one; reopens a stream that ended
    without it (the server went away between two snapshots)."""
    while True:
        call = cl.stats.WatchCampaignStats(spb.WatchCampaignStatsRequest(
            campaign_id=cp.id, interval_ms=int(interval * 1000)))
        try:
            async for st in call:
                # Until stats has learnt the lifecycle status, the campaign's own says it.
                view.update(st, st.campaign_status or cp.status)
                if st.final:
                    return st
        except Exception:
            cl.last = "stats"  # the hint names the service that failed
            raise
        finally:
            call.cancel()
        await asyncio.sleep(REOPEN_DELAY)


async def watch(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    cp = await cl.campaigns.GetCampaign(cpb.GetCampaignRequest(id=args.id))
    out.print(f"watching campaign {cp.id} ({cp.name or 'unnamed'}); Ctrl-C stops watching, "
              "not the campaign", soft_wrap=True, markup=False, highlight=False)
    with View(out, cp.id) as view:
        st = await follow(cl, view, cp, max(0.1, args.interval))
    status = st.campaign_status
    if not out.json:
        # The outcome is the campaign's own (derived from the ledger); the figures are final.
        cp = await cl.campaigns.GetCampaign(cpb.GetCampaignRequest(id=cp.id))
        outcome = f", outcome {enum(cpb.CampaignOutcome.Name(cp.outcome))}" if cp.outcome else ""
        out.print(f"campaign {cp.id} {enum(cpb.CampaignStatus.Name(status))}{outcome}: "
                  f"processed {st.processed}/{st.total}, sent {st.sent}, delivered "
                  f"{st.delivered + st.assumed_delivered}, failed {st.failed}", soft_wrap=True,
                  highlight=False)
    return 0 if status == cpb.CAMPAIGN_STATUS_DONE else 1
