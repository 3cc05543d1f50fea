"""`herald list`, `queue`, `kpis` and `stats`: campaigns as tables, and how a campaign's
status reads in every campaign command."""

from __future__ import annotations

import argparse

from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import common_pb2 as c
from herald.v1 import stats_pb2 as spb

from cli.commands import collect, more_hint
from cli.connect import Clients
from cli.output import Output, enum, table, ts


def status(cp: cpb.Campaign) -> str:
    return enum(cpb.CampaignStatus.Name(cp.status))


def list_filter(args: argparse.Namespace) -> str:
    terms = [args.filter] if args.filter else []
    for key in ("status", "channel", "mode", "period", "search"):
        if getattr(args, key):
            terms.append(f"{key}={getattr(args, key)}")
    return " ".join(terms)


def progress_cell(p: cpb.Progress) -> str:
    return f"{p.processed}/{p.total}" + (f" ({p.errors} err)" if p.errors else "")


async def list_campaigns(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    req = cpb.ListCampaignsRequest(filter=list_filter(args), order_by=args.order_by,
                                   show_archived=args.archived, archived_only=args.archived_only,
                                   moderation_queue=args.moderation_queue, show_all=args.all)
    items, resp = await collect(cl.campaigns.ListCampaigns, req, "campaigns", args)
    if out.json:
        out.emit(items)
        return 0
    # The id always whole; on a wide terminal more columns.
    wide = out.console.width >= 120
    cols = ["id", "status", "channel", "progress", *(("mode", "sender", "created") if wide else ()), "name"]
    rows = [[cp.id, status(cp), enum(c.Channel.Name(cp.channel)), progress_cell(cp.progress),
             *((enum(cpb.CampaignMode.Name(cp.mode or 1)), cp.sender, ts(cp.created_at)) if wide else ()),
             cp.name or "-"] for cp in items]
    out.print(table(f"campaigns ({len(items)} of {resp.total_size if resp else 0})", cols,
                    ids=("id",), rows=rows))
    if hint := more_hint(resp, args):
        out.print(hint, soft_wrap=True)
    return 0


async def queue(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    req = cpb.ListCampaignsRequest(filter="moderation=PENDING", order_by="created asc",
                                   moderation_queue=True)
    items, resp = await collect(cl.campaigns.ListCampaigns, req, "campaigns", args)
    if out.json:
        out.emit(items)
        return 0
    rows = [[cp.id, enum(c.Channel.Name(cp.channel)), cp.sender, str(cp.recipients_count),
             cp.content.subject or cp.content.text] for cp in items]
    out.print(table(f"moderation queue ({resp.total_size if resp else 0})",
                    ("id", "channel", "sender", "recipients", "content"), ids=("id",), rows=rows))
    return 0


async def kpis(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    k = await cl.campaigns.GetCampaignKpis(cpb.GetCampaignKpisRequest(period=args.period))
    if out.json:
        out.emit(k)
        return 0
    cols = ("total", "active", "completed", "errors", "delivered", "awaiting moderation")
    out.print(table("workspace KPIs", cols, right=cols, rows=[[str(x) for x in (
        k.total_campaigns, k.active, k.completed, k.errors, k.messages_delivered,
        k.awaiting_moderation)]]))
    return 0


async def stats(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    st = await cl.stats.GetCampaignStats(spb.GetCampaignStatsRequest(campaign_id=args.id))
    if out.json:
        out.emit(st)
        return 0
    rows = [[f.name, f"{getattr(st, f.name):.1%}" if f.type == f.TYPE_DOUBLE else str(getattr(st, f.name))]
            for f in st.DESCRIPTOR.fields if f.name not in ("campaign_id", "variants")]
    out.print(table(f"stats {args.id}", ("metric", "value"), right=("value",), rows=rows))
    return 0
