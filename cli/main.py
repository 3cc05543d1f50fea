"""`herald`: the operators' CLI over gRPC.

Addresses and token come from HERALD_CAMPAIGNS_ADDR / HERALD_RECIPIENTS_ADDR /
HERALD_STATS_ADDR / HERALD_TOKEN (or --workspace in development mode).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import grpc
from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import campaigns_pb2_grpc as cgrpc
from herald.v1 import common_pb2 as c
from herald.v1 import stats_pb2 as spb
from herald.v1 import stats_pb2_grpc as sgrpc
from rich.console import Console
from rich.table import Table

from shared import auth, config

console = Console()
ACTIONS = {"submit": "SubmitCampaign", "approve": "ApproveCampaign", "reject": "RejectCampaign",
           "start": "StartCampaign", "pause": "PauseCampaign", "resume": "ResumeCampaign",
           "cancel": "CancelCampaign"}


def short(enum_name: str, prefix: str) -> str:
    return enum_name.removeprefix(prefix)


def ts(t: Any) -> str:
    return t.ToDatetime().strftime("%Y-%m-%d %H:%M:%S") if t.seconds else "-"


async def run(args: argparse.Namespace) -> int:
    md = auth.call_metadata(workspace=args.workspace, token=config.TOKEN.get())
    async with grpc.aio.insecure_channel(config.CAMPAIGNS_ADDR.get()) as cch, \
            grpc.aio.insecure_channel(config.STATS_ADDR.get()) as sch:
        camp, stats = cgrpc.CampaignServiceStub(cch), sgrpc.StatsServiceStub(sch)
        if args.cmd == "list":
            resp = await camp.ListCampaigns(cpb.ListCampaignsRequest(
                filter=args.filter, order_by=args.order_by, page_size=args.limit,
                show_archived=args.archived), metadata=md)
            table = Table(title=f"campaigns ({resp.total_size})")
            for col in ("id", "status", "channel", "mode", "progress", "sender", "created", "author"):
                table.add_column(col)
            for cp in resp.campaigns:
                p = cp.progress
                table.add_row(cp.id, short(cpb.CampaignStatus.Name(cp.status), "CAMPAIGN_STATUS_"),
                              short(c.Channel.Name(cp.channel), "CHANNEL_"),
                              short(cpb.CampaignMode.Name(cp.mode), "CAMPAIGN_MODE_"),
                              f"{p.processed}/{p.total} ({p.errors} err)", cp.sender,
                              ts(cp.created_at), cp.author)
            console.print(table)
        elif args.cmd == "get":
            cp = await camp.GetCampaign(cpb.GetCampaignRequest(id=args.id), metadata=md)
            console.print(cp)
        elif args.cmd in ACTIONS:
            cp = await getattr(camp, ACTIONS[args.cmd])(cpb.CampaignActionRequest(
                id=args.id, note=args.note, request_id=args.request_id), metadata=md)
            console.print(f"{cp.id}: {short(cpb.CampaignStatus.Name(cp.status), 'CAMPAIGN_STATUS_')}")
        elif args.cmd == "messages":
            resp = await camp.ListMessages(cpb.ListMessagesRequest(
                campaign_id=args.id, filter=args.filter, page_size=args.limit), metadata=md)
            table = Table(title=f"messages ({resp.total_size})")
            for col in ("recipient", "status", "carrier", "error", "sent", "delivered", "views", "clicks"):
                table.add_column(col)
            for m in resp.messages:
                table.add_row(m.phone or m.email, short(c.MessageStatus.Name(m.status), "MESSAGE_STATUS_"),
                              m.carrier_result, m.error_description, ts(m.sent_at), ts(m.delivered_at),
                              str(m.views), str(m.clicks))
            console.print(table)
        elif args.cmd == "stats":
            st = await stats.GetCampaignStats(spb.GetCampaignStatsRequest(campaign_id=args.id), metadata=md)
            table = Table(title=f"stats {args.id}")
            table.add_column("metric")
            table.add_column("value", justify="right")
            for f in st.DESCRIPTOR.fields:
                if f.name != "campaign_id":
                    v = getattr(st, f.name)
                    table.add_row(f.name, f"{v:.1%}" if isinstance(v, float) else str(v))
            console.print(table)
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="herald", description="Herald operators' CLI")
    ap.add_argument("--workspace", default="", help="workspace (development mode / service tokens)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="list campaigns")
    ls.add_argument("--filter", default="", help="e.g. status=SENDING,PAUSED channel=SMS")
    ls.add_argument("--order-by", default="created desc")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--archived", action="store_true")
    sub.add_parser("get", help="show one campaign").add_argument("id")
    for name in ACTIONS:
        p = sub.add_parser(name, help=f"{name} a campaign")
        p.add_argument("id")
        p.add_argument("--note", default="")
        p.add_argument("--request-id", default="")
    msgs = sub.add_parser("messages", help="the send detail of a campaign")
    msgs.add_argument("id")
    msgs.add_argument("--filter", default="", help="e.g. status=FAILED")
    msgs.add_argument("--limit", type=int, default=50)
    sub.add_parser("stats", help="campaign stats").add_argument("id")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return asyncio.run(run(args))
    except grpc.aio.AioRpcError as exc:
        console.print(f"[red]{exc.code().name}[/]: {exc.details()}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
