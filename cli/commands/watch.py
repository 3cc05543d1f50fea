"""`herald watch <id>`: a live progress bar and counters from StatsService.WatchCampaignStats
until the campaign is final (DONE, CANCELLED, FAILED, EXPIRED)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from typing import Any

from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import stats_pb2 as spb
from rich.console import Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from cli.connect import Clients
from cli.output import Output, enum, to_dict

TERMINAL = {cpb.CAMPAIGN_STATUS_DONE, cpb.CAMPAIGN_STATUS_FAILED, cpb.CAMPAIGN_STATUS_CANCELLED,
            cpb.CAMPAIGN_STATUS_EXPIRED}
CATCH_UP = 5.0  # seconds the stats may lag the ledger once the campaign is final
COUNTERS = ("sent", "delivered", "failed", "queued", "sending", "submitted", "deferred", "opted_out")


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

    def update(self, cp: cpb.Campaign, st: spb.CampaignStats, final: bool = False) -> None:
        status = enum(cpb.CampaignStatus.Name(cp.status))
        if self.out.json:
            self.out.emit({"campaignId": cp.id, "status": cpb.CampaignStatus.Name(cp.status),
                           "final": final, "stats": to_dict(st)}, line=True)
        elif self.live is not None:
            self.bar.update(self.task, total=st.total or None, completed=st.processed)
            self.text.plain = counters_line(status, st)
            self.live.refresh()
        else:
            self.out.print(counters_line(status, st), soft_wrap=True, highlight=False)


async def watch(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    cp = await cl.campaigns.GetCampaign(cpb.GetCampaignRequest(id=args.id))
    interval = max(0.1, args.interval)
    call = cl.stats.WatchCampaignStats(spb.WatchCampaignStatsRequest(
        campaign_id=cp.id, interval_ms=int(interval * 1000)))
    updates: asyncio.Queue[spb.CampaignStats | None] = asyncio.Queue()

    failure: list[BaseException] = []

    async def read() -> None:
        try:
            async for st in call:
                await updates.put(st)
        except Exception as exc:  # noqa: BLE001 - handed to the loop below
            failure.append(exc)
        finally:
            await updates.put(None)  # the stream ended (the campaign is final, or the server left)

    reader = asyncio.create_task(read())
    out.print(f"watching campaign {cp.id} ({cp.name or 'unnamed'}); Ctrl-C stops watching, "
              "not the campaign", soft_wrap=True, markup=False, highlight=False)
    st = spb.CampaignStats(campaign_id=cp.id)
    final_since: float | None = None
    reopen = False
    shown: tuple[int, bytes] | None = None
    try:
        with View(out, cp.id) as view:
            while True:
                ended = False
                try:
                    item = await asyncio.wait_for(updates.get(), interval)
                    if item is None:
                        ended = True
                        if failure:
                            cl.last = "stats"  # the hint names the service that failed
                            raise failure[0]
                    else:
                        st = item
                except TimeoutError:
                    pass
                # The stream says how far the sends are; the campaign says whether it is over.
                cp = await cl.campaigns.GetCampaign(cpb.GetCampaignRequest(id=cp.id))
                if (cp.status, st.SerializeToString()) != shown and not ended:
                    shown = (cp.status, st.SerializeToString())
                    view.update(cp, st)
                if cp.status in TERMINAL:
                    final_since = final_since or time.monotonic()
                    caught_up = st.processed >= cp.progress.processed
                    if ended or caught_up or time.monotonic() - final_since > CATCH_UP:
                        break
                elif ended:
                    reopen = True
                    break
            if not reopen:
                st = await cl.stats.GetCampaignStats(spb.GetCampaignStatsRequest(campaign_id=cp.id))
                view.update(cp, st, final=True)
    finally:
        call.cancel()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
    if reopen:  # the stream ended while the campaign still runs (a stats pod restarted)
        await asyncio.sleep(1.0)
        return await watch(args, cl, out)
    if not out.json:
        p = cp.progress
        outcome = f", outcome {enum(cpb.CampaignOutcome.Name(cp.outcome))}" if cp.outcome else ""
        out.print(f"campaign {cp.id} {enum(cpb.CampaignStatus.Name(cp.status))}{outcome}: "
                  f"processed {p.processed}/{p.total}, sent {p.sent}, delivered "
                  f"{p.delivered + p.assumed_delivered}, failed {p.errors}", soft_wrap=True,
                  highlight=False)
    return 0 if cp.status == cpb.CAMPAIGN_STATUS_DONE else 1

