"""`herald get <id>`: a campaign's detail page in the terminal: the info block, KPI cards,
the tabs' counts, the daily timeline and the state history."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable
from typing import Any

import grpc
from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import common_pb2 as c
from herald.v1 import stats_pb2 as spb
from rich.columns import Columns
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cli.connect import Clients
from cli.output import Output, enum, table, ts


async def _maybe(call: Awaitable[Any]) -> Any:
    """A tab's figure, or None when its service does not answer (the page still shows)."""
    try:
        return await call
    except grpc.aio.AioRpcError:
        return None


async def tab_counts(cl: Clients, cp: cpb.Campaign) -> dict[str, str]:
    cid = cp.id
    failed, replies, clicks, errors, audit, exports = await asyncio.gather(
        _maybe(cl.campaigns.ListMessages(cpb.ListMessagesRequest(campaign_id=cid, page_size=1,
                                                                 filter="result=failed"))),
        _maybe(cl.campaigns.ListReplies(cpb.ListRepliesRequest(campaign_id=cid, page_size=1))),
        _maybe(cl.campaigns.ListClicks(cpb.ListClicksRequest(campaign_id=cid, page_size=1))),
        _maybe(cl.campaigns.ListJobErrors(cpb.ListJobErrorsRequest(campaign_id=cid, page_size=1))),
        _maybe(cl.campaigns.ListAuditEvents(cpb.ListAuditEventsRequest(campaign_id=cid, page_size=1000))),
        _maybe(cl.campaigns.ListExports(cpb.ListExportsRequest(campaign_id=cid, page_size=1000))))

    def n(resp: Any, value: Any) -> str:
        return "?" if resp is None else str(value(resp))

    return {
        "messages": str(cp.progress.total),
        "failed": n(failed, lambda r: r.total_size),
        "replies": n(replies, lambda r: r.total_size),
        "clicks": n(clicks, lambda r: f"{r.total_size} ({r.unique_contacts} contacts)"),
        "job errors": n(errors, lambda r: r.total_size),
        "audit": n(audit, lambda r: f"{len(r.events)}{'+' if r.next_page_token else ''}"),
        "exports": n(exports, lambda r: f"{len(r.exports)}{'+' if r.next_page_token else ''}"),
    }


def info_block(cp: cpb.Campaign) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    state = enum(cpb.CampaignStatus.Name(cp.status))
    if cp.status_reason:
        state += f" ({cp.status_reason})"
    if cp.outcome:
        state += f", outcome {enum(cpb.CampaignOutcome.Name(cp.outcome))}"
    window = (f"{cp.window.start}-{cp.window.end} {cp.window.time_zone}"
              if cp.window.start else "any time")
    rows = [
        ("id", cp.id), ("status", state), ("channel", enum(c.Channel.Name(cp.channel))),
        ("mode", enum(cpb.CampaignMode.Name(cp.mode or cpb.CAMPAIGN_MODE_ON_DEMAND))),
        ("sender", cp.sender), ("author", cp.author),
        ("moderation", enum(cpb.ModerationState.Name(cp.moderation))
         + (f": {cp.moderation_note}" if cp.moderation_note else "")),
        ("recipients", str(cp.recipients_count)),
        ("categories", ", ".join(cp.category_names or cp.category_ids) or "-"),
        ("schedule", f"start {ts(cp.start_at)}, end {ts(cp.end_at)}, window {window}"
                     + (f", max {cp.max_rate:g}/s" if cp.max_rate else "")),
        ("created", ts(cp.created_at)), ("started", ts(cp.started_at)),
        ("completed", ts(cp.completed_at)),
    ]
    if cp.content.subject:
        rows.append(("subject", cp.content.subject))
    rows.append(("content", cp.content.text or ("[html]" if cp.content.html else "-")))
    if cp.variants:
        rows.append(("variants", ", ".join(f"{v.name} {v.split_percent}%" for v in cp.variants)
                     + (f"; winner {cp.winner}" if cp.winner else f"; {cp.held} held")))
    if cp.archived:
        rows.append(("archived", "yes"))
    for key, value in rows:
        grid.add_row(key, Text(value))
    return Panel(grid, title=escape(cp.name or "campaign"), title_align="left")


def kpi_cards(cp: cpb.Campaign, st: spb.CampaignStats | None) -> Columns:
    p = cp.progress
    cards = [("total", p.total), ("processed", p.processed), ("sent", p.sent),
             ("delivered", p.delivered + p.assumed_delivered), ("failed", p.errors),
             ("opted out", p.opted_out), ("in flight", p.queued + p.sending + p.submitted + p.deferred)]
    if st is not None:
        cards += [("delivery", f"{st.delivery_rate:.1%}")]
        if cp.channel == c.CHANNEL_EMAIL:
            cards += [("open rate", f"{st.open_rate:.1%}"), ("click rate", f"{st.click_rate:.1%}")]
        else:
            cards += [("replies", st.replies)]
    return Columns([Panel(Text(str(v), justify="center", style="bold"), title=k, width=15)
                    for k, v in cards])


async def show(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    cp = await cl.campaigns.GetCampaign(cpb.GetCampaignRequest(id=args.id))
    if out.json:
        out.emit(cp)
        return 0
    st, tabs = await asyncio.gather(
        _maybe(cl.stats.GetCampaignStats(spb.GetCampaignStatsRequest(campaign_id=cp.id))),
        tab_counts(cl, cp))
    out.print(info_block(cp))
    out.print(kpi_cards(cp, st))
    out.print("tabs: " + "   ".join(f"[bold]{k}[/] {escape(v)}" for k, v in tabs.items()))
    if cp.daily:
        out.print(table("timeline (UTC days)", ("date", "sent", "delivered", "failed"),
                        right=("sent", "delivered", "failed"),
                        rows=[[d.date, str(d.sent), str(d.delivered), str(d.failed)] for d in cp.daily]))
    out.print(table("state history", ("at", "status", "reason", "actor"), rows=[
        [ts(h.at), enum(cpb.CampaignStatus.Name(h.status)), h.reason, h.actor] for h in cp.history]))
    return 0
