"""`herald`: the operators' CLI over gRPC.

Addresses and token come from HERALD_CAMPAIGNS_ADDR / HERALD_RECIPIENTS_ADDR /
HERALD_STATS_ADDR / HERALD_TOKEN (or --workspace in development mode).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
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
           "cancel": "CancelCampaign", "archive": "ArchiveCampaign", "restore": "RestoreCampaign"}


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
                show_archived=args.archived, moderation_queue=args.moderation_queue,
                show_all=args.all), metadata=md)
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
        elif args.cmd == "queue":
            resp = await camp.ListCampaigns(cpb.ListCampaignsRequest(
                filter="moderation=PENDING", order_by="created asc", page_size=args.limit,
                moderation_queue=True), metadata=md)
            table = Table(title=f"moderation queue ({resp.total_size})")
            for col in ("id", "channel", "sender", "recipients", "content", "author", "created"):
                table.add_column(col)
            for cp in resp.campaigns:
                table.add_row(cp.id, short(c.Channel.Name(cp.channel), "CHANNEL_"), cp.sender,
                              str(cp.recipients_count), (cp.content.subject or cp.content.text)[:40],
                              cp.author, ts(cp.created_at))
            console.print(table)
        elif args.cmd == "kpis":
            k = await camp.GetCampaignKpis(cpb.GetCampaignKpisRequest(period=args.period), metadata=md)
            table = Table(title="workspace KPIs")
            for col in ("total", "active", "completed", "errors", "delivered", "awaiting moderation"):
                table.add_column(col, justify="right")
            table.add_row(*(str(x) for x in (k.total_campaigns, k.active, k.completed, k.errors,
                                              k.messages_delivered, k.awaiting_moderation)))
            console.print(table)
        elif args.cmd == "delete":
            r = await camp.DeleteCampaign(cpb.CampaignActionRequest(id=args.id, note=args.note,
                                                                    request_id=args.request_id), metadata=md)
            console.print(f"deleted {r.id}")
        elif args.cmd == "audit":
            resp = await camp.ListAuditEvents(cpb.ListAuditEventsRequest(campaign_id=args.id, page_size=200),
                                              metadata=md)
            table = Table(title=f"audit {args.id}")
            for col in ("at", "action", "actor", "note", "changes"):
                table.add_column(col)
            for ev in resp.events:
                changes = ", ".join(f"{k}: {ev.before.get(k, '')} -> {ev.after.get(k, '')}"
                                    for k in sorted(set(ev.before) | set(ev.after)))
                table.add_row(ts(ev.at), ev.action, ev.actor, ev.note, changes)
            console.print(table)
        elif args.cmd == "retry":
            r = await camp.RetryMessages(cpb.RetryMessagesRequest(
                campaign_id=args.id, message_ids=args.message, filter=args.filter,
                request_id=args.request_id), metadata=md)
            console.print(f"retried {r.retried}, skipped {r.skipped}; campaign "
                          f"{short(cpb.CampaignStatus.Name(r.campaign.status), 'CAMPAIGN_STATUS_')}")
            if r.excluded:
                table = Table(title=f"not retried ({len(r.excluded)})")
                for col in ("message", "category", "reason"):
                    table.add_column(col)
                for x in r.excluded:
                    table.add_row(x.message_id, short(c.FailureCategory.Name(x.category),
                                                      "FAILURE_CATEGORY_"), x.reason)
                console.print(table)
        elif args.cmd == "preview":
            out = await camp.PreviewContent(preview_request(args), metadata=md)
            for name in ("subject", "text", "html"):
                if getattr(out, name):
                    console.print(f"[bold]{name}[/]: {getattr(out, name)}")
            if out.sms_parts:
                console.print(f"{out.characters} characters, {out.sms_encoding}, {out.sms_parts} part(s)")
            console.print(f"variables: {', '.join(out.variables) or '-'}")
        elif args.cmd == "promote":
            cp = await camp.PromoteVariant(cpb.PromoteVariantRequest(
                campaign_id=args.id, variant=args.variant, request_id=args.request_id), metadata=md)
            console.print(f"{cp.id}: winner {cp.winner}")
        elif args.cmd == "errors":
            resp = await camp.ListJobErrors(cpb.ListJobErrorsRequest(campaign_id=args.id), metadata=md)
            table = Table(title=f"job errors ({resp.total_size})")
            for col in ("at", "stage", "message"):
                table.add_column(col)
            for er in resp.errors:
                table.add_row(ts(er.at), er.stage, er.message)
            console.print(table)
        elif args.cmd == "export":
            ex = await camp.CreateExport(cpb.CreateExportRequest(
                campaign_id=args.id, filter=args.filter,
                format=cpb.EXPORT_FORMAT_TXT if args.txt else cpb.EXPORT_FORMAT_CSV), metadata=md)
            for _ in range(600):
                ex = await camp.GetExport(cpb.GetExportRequest(id=ex.id), metadata=md)
                if ex.status not in (cpb.EXPORT_STATUS_QUEUED, cpb.EXPORT_STATUS_RUNNING):
                    break
                await asyncio.sleep(0.2)
            if ex.status != cpb.EXPORT_STATUS_DONE:
                console.print(f"[red]export {short(cpb.ExportStatus.Name(ex.status), 'EXPORT_STATUS_')}[/]: {ex.error}")
                return 1
            path = args.output or ex.file_name
            data = b"".join([chunk.data async for chunk in camp.DownloadExport(
                cpb.GetExportRequest(id=ex.id), metadata=md)])
            await asyncio.to_thread(Path(path).write_bytes, data)
            console.print(f"{ex.rows} rows -> {path}")
        elif args.cmd == "trigger":
            rec = c.Recipient(phone=args.phone, email=args.email, contact_id=args.contact,
                              fields=dict(f.split("=", 1) for f in args.field))
            m = await camp.TriggerCampaign(cpb.TriggerCampaignRequest(
                campaign_id=args.id, recipient=rec, request_id=args.request_id), metadata=md)
            console.print(f"message {m.id}: {short(c.MessageStatus.Name(m.status), 'MESSAGE_STATUS_')} "
                          f"{m.error_description}")
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
            for col in ("recipient", "status", "stage", "result", "route", "carrier", "error", "sent",
                        "delivered", "views", "clicks", "content"):
                table.add_column(col)
            for m in resp.messages:
                table.add_row(m.phone or m.email, short(c.MessageStatus.Name(m.status), "MESSAGE_STATUS_"),
                              short(cpb.MessageStage.Name(m.stage), "MESSAGE_STAGE_"),
                              short(cpb.DeliveryResult.Name(m.result), "DELIVERY_RESULT_"), m.route,
                              m.carrier_result, m.error_description, ts(m.sent_at), ts(m.delivered_at),
                              str(m.views), str(m.clicks), m.content_preview)
            console.print(table)
        elif args.cmd == "reconcile":
            rep = await camp.ReconcileCampaign(cpb.ReconcileCampaignRequest(
                campaign_id=args.id, repair=args.repair, max_differences=args.max_differences,
                request_id=args.request_id), metadata=md)
            print_reconcile(rep)
            return 0 if rep.final else 2
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


def print_reconcile(rep: cpb.ReconcileReport) -> None:
    """Ledger and stats side by side (a differing figure in red), the differing messages and
    the verdict."""
    if rep.repaired:
        console.print("stats rebuilt from the ledger")
    table = Table(title=f"reconcile {rep.campaign_id}")
    for col in ("figure", "ledger", "stats"):
        table.add_column(col, justify="right" if col != "figure" else "left")
    for f in rep.ledger.DESCRIPTOR.fields:
        a, b = getattr(rep.ledger, f.name), getattr(rep.stats, f.name)
        table.add_row(f.name, str(a), str(b) if a == b else f"[red]{b}[/]")
    console.print(table)
    console.print(f"{rep.compared} messages compared, {rep.differing} differ")
    if rep.differences:
        diff = Table(title=f"differing messages (first {len(rep.differences)} of {rep.differing})")
        for col in ("message", "ledger", "stats"):
            diff.add_column(col)
        for d in rep.differences:
            diff.add_row(d.message_id, short(c.MessageStatus.Name(d.ledger_status), "MESSAGE_STATUS_"),
                         "never seen" if not d.stats_status
                         else short(c.MessageStatus.Name(d.stats_status), "MESSAGE_STATUS_"))
        console.print(diff)
    console.print("[bold green]FINAL[/]" if rep.final else "[bold yellow]NOT FINAL[/]")


def preview_request(args: argparse.Namespace) -> cpb.PreviewContentRequest:
    """A stored campaign's content, or content given inline (--text/--subject/--html)."""
    req = cpb.PreviewContentRequest(campaign_id=args.id or "", variant=args.variant,
                                    contact_id=args.contact)
    if not args.id:
        req.channel = c.CHANNEL_EMAIL if args.channel == "email" else c.CHANNEL_SMS
        req.content.CopyFrom(cpb.Content(text=args.text, subject=args.subject, html=args.html))
    if args.first_name or args.field:
        req.sample.CopyFrom(c.Recipient(first_name=args.first_name,
                                        fields=dict(f.split("=", 1) for f in args.field)))
    return req


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="herald", description="Herald operators' CLI")
    ap.add_argument("--workspace", default="", help="workspace (development mode / service tokens)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="list campaigns")
    ls.add_argument("--filter", default="", help="e.g. status=SENDING,PAUSED channel=SMS")
    ls.add_argument("--order-by", default="created desc")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--archived", action="store_true")
    ls.add_argument("--moderation-queue", action="store_true", help="only NEW campaigns")
    ls.add_argument("--all", action="store_true", help="every status, NEW included")
    pv = sub.add_parser("preview", help="render a campaign's content (or --text/--subject/--html)")
    pv.add_argument("id", nargs="?", default="", help="campaign id (omit for inline content)")
    pv.add_argument("--contact", default="", help="render for this contact id")
    pv.add_argument("--variant", default="")
    pv.add_argument("--channel", choices=("sms", "email"), default="sms")
    pv.add_argument("--text", default="")
    pv.add_argument("--subject", default="")
    pv.add_argument("--html", default="")
    pv.add_argument("--first-name", default="", help="sample recipient's first name")
    pv.add_argument("--field", action="append", default=[], help="sample field name=value (repeatable)")
    sub.add_parser("get", help="show one campaign").add_argument("id")
    for name in ACTIONS:
        p = sub.add_parser(name, help=f"{name} a campaign")
        p.add_argument("id")
        p.add_argument("--note", default="")
        p.add_argument("--request-id", default="")
    sub.add_parser("queue", help="campaigns awaiting moderation").add_argument("--limit", type=int, default=50)
    kp = sub.add_parser("kpis", help="workspace KPI tiles")
    kp.add_argument("--period", default="all", help="all, 1h, 24h, 7d, 30d")
    dl = sub.add_parser("delete", help="delete a DRAFT, NEW or finished campaign")
    dl.add_argument("id")
    dl.add_argument("--note", default="")
    dl.add_argument("--request-id", default="")
    sub.add_parser("audit", help="who did what to a campaign").add_argument("id")
    sub.add_parser("errors", help="job errors of a campaign").add_argument("id")
    rt = sub.add_parser("retry", help="retry failed messages")
    rt.add_argument("id")
    rt.add_argument("--message", action="append", default=[], help="message id (repeatable)")
    rt.add_argument("--filter", default="", help="e.g. category=THROTTLED")
    rt.add_argument("--request-id", default="")
    pr = sub.add_parser("promote", help="A/B: send the winning variant to the held audience")
    pr.add_argument("id")
    pr.add_argument("variant")
    pr.add_argument("--request-id", default="")
    ex = sub.add_parser("export", help="export the send detail to a CSV (or TXT) file")
    ex.add_argument("id")
    ex.add_argument("--filter", default="")
    ex.add_argument("--txt", action="store_true")
    ex.add_argument("-o", "--output", default="")
    tr = sub.add_parser("trigger", help="TRIGGER campaigns: send one message")
    tr.add_argument("id")
    tr.add_argument("--phone", default="")
    tr.add_argument("--email", default="")
    tr.add_argument("--contact", default="")
    tr.add_argument("--field", action="append", default=[], help="name=value (repeatable)")
    tr.add_argument("--request-id", default="")
    msgs = sub.add_parser("messages", help="the send detail of a campaign")
    msgs.add_argument("id")
    msgs.add_argument("--filter", default="",
                      help="e.g. status=FAILED, result=failed, stage=submitted, category=THROTTLED")
    msgs.add_argument("--limit", type=int, default=50)
    sub.add_parser("stats", help="campaign stats").add_argument("id")
    rc = sub.add_parser("reconcile", help="ledger beside stats, message by message: are the "
                        "figures final? (exit 0 final, 2 not final)")
    rc.add_argument("id")
    rc.add_argument("--repair", action="store_true",
                    help="rebuild the campaign's stats from the ledger first (operator)")
    rc.add_argument("--max-differences", type=int, default=100, help="messages listed (at most 1000)")
    rc.add_argument("--request-id", default="")
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
