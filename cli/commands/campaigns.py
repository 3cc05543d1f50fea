"""Campaign commands: create, list, get (the detail page), the lifecycle actions, messages,
replies, clicks, exports, reconcile and the rest of CampaignService."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import common_pb2 as c
from herald.v1 import stats_pb2 as spb
from rich.text import Text

from cli import campaign_file
from cli.commands import add, category_ids, collect, detail, more_hint, paging, watch
from cli.connect import Clients
from cli.output import Output, enum, table, ts

ACTIONS = {"submit": "SubmitCampaign", "approve": "ApproveCampaign", "reject": "RejectCampaign",
           "start": "StartCampaign", "pause": "PauseCampaign", "resume": "ResumeCampaign",
           "cancel": "CancelCampaign", "archive": "ArchiveCampaign", "restore": "RestoreCampaign"}


def status(cp: cpb.Campaign) -> str:
    return enum(cpb.CampaignStatus.Name(cp.status))


async def create(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    spec = campaign_file.load(Path(args.file)) if args.file else {}
    spec = campaign_file.merge_flags(spec, args)
    cats = await category_ids(cl) if (spec.get("audience") or {}).get("categories") else {}
    req = campaign_file.build(spec, cats)
    cp = await cl.campaigns.CreateCampaign(req)
    if out.json:
        out.emit(cp)
        return 0
    out.print(f"created campaign {cp.id} ({status(cp)})", soft_wrap=True)
    if cp.status == cpb.CAMPAIGN_STATUS_NEW:
        out.print(f"next: herald approve {cp.id}   then: herald watch {cp.id}", soft_wrap=True)
    return 0


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


async def action(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    cp = await getattr(cl.campaigns, args.rpc)(cpb.CampaignActionRequest(
        id=args.id, note=args.note, request_id=args.request_id))
    if out.json:
        out.emit(cp)
    else:
        out.print(f"{cp.id}: {status(cp)}", soft_wrap=True)
    return 0


async def delete(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    r = await cl.campaigns.DeleteCampaign(cpb.CampaignActionRequest(
        id=args.id, note=args.note, request_id=args.request_id))
    if out.json:
        out.emit(r)
    else:
        out.print(f"deleted {r.id}", soft_wrap=True)
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


async def audit(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    items, _ = await collect(cl.campaigns.ListAuditEvents,
                             cpb.ListAuditEventsRequest(campaign_id=args.id), "events", args)
    if out.json:
        out.emit(items)
        return 0
    rows = []
    for ev in items:
        changes = ", ".join(f"{k}: {ev.before.get(k, '')} -> {ev.after.get(k, '')}"
                            for k in sorted(set(ev.before) | set(ev.after)))
        rows.append([ts(ev.at), ev.action, ev.actor, ev.note, changes])
    out.print(table(f"audit {args.id}", ("at", "action", "actor", "note", "changes"), rows=rows))
    return 0


async def errors(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    items, resp = await collect(cl.campaigns.ListJobErrors,
                                cpb.ListJobErrorsRequest(campaign_id=args.id), "errors", args)
    if out.json:
        out.emit(items)
        return 0
    out.print(table(f"job errors ({resp.total_size if resp else 0})", ("at", "stage", "message"),
                    rows=[[ts(e.at), e.stage, e.message] for e in items]))
    return 0


async def retry(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    r = await cl.campaigns.RetryMessages(cpb.RetryMessagesRequest(
        campaign_id=args.id, message_ids=args.message, filter=args.filter, request_id=args.request_id))
    if out.json:
        out.emit(r)
        return 0
    out.print(f"retried {r.retried}, skipped {r.skipped}; campaign {status(r.campaign)}")
    if r.excluded:
        out.print(table(f"not retried ({len(r.excluded)})", ("message", "category", "reason"),
                        ids=("message",), rows=[[x.message_id, enum(c.FailureCategory.Name(x.category)),
                                                 x.reason] for x in r.excluded]))
    return 0


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


async def preview(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    r = await cl.campaigns.PreviewContent(preview_request(args))
    if out.json:
        out.emit(r)
        return 0
    for name in ("subject", "text", "html"):
        if getattr(r, name):
            out.print(Text.assemble((f"{name}: ", "bold"), getattr(r, name)))
    if r.sms_parts:
        out.print(f"{r.characters} characters, {r.sms_encoding}, {r.sms_parts} part(s)")
    out.print(f"variables: {', '.join(r.variables) or '-'}", markup=False)
    return 0


async def promote(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    cp = await cl.campaigns.PromoteVariant(cpb.PromoteVariantRequest(
        campaign_id=args.id, variant=args.variant, request_id=args.request_id))
    if out.json:
        out.emit(cp)
    else:
        out.print(f"{cp.id}: winner {cp.winner}", soft_wrap=True)
    return 0


async def export(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    ex = await cl.campaigns.CreateExport(cpb.CreateExportRequest(
        campaign_id=args.id, filter=args.filter,
        format=cpb.EXPORT_FORMAT_TXT if args.txt else cpb.EXPORT_FORMAT_CSV))
    for _ in range(600):
        ex = await cl.campaigns.GetExport(cpb.GetExportRequest(id=ex.id))
        if ex.status not in (cpb.EXPORT_STATUS_QUEUED, cpb.EXPORT_STATUS_RUNNING):
            break
        await asyncio.sleep(0.2)
    if ex.status != cpb.EXPORT_STATUS_DONE:
        out.error(f"export {enum(cpb.ExportStatus.Name(ex.status))}: {ex.error}")
        if out.json:
            out.emit(ex)
        return 1
    path = args.output or ex.file_name
    data = b"".join([chunk.data async for chunk in cl.campaigns.DownloadExport(
        cpb.GetExportRequest(id=ex.id))])
    await asyncio.to_thread(Path(path).write_bytes, data)
    if out.json:
        out.emit({"export": ex, "path": path})
    else:
        out.print(f"{ex.rows} rows -> {path}", soft_wrap=True)
    return 0


async def trigger(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    rec = c.Recipient(phone=args.phone, email=args.email, contact_id=args.contact,
                      fields=dict(f.split("=", 1) for f in args.field))
    m = await cl.campaigns.TriggerCampaign(cpb.TriggerCampaignRequest(
        campaign_id=args.id, recipient=rec, request_id=args.request_id))
    if out.json:
        out.emit(m)
    else:
        out.print(f"message {m.id}: {enum(c.MessageStatus.Name(m.status))} {m.error_description}",
                  soft_wrap=True, markup=False)
    return 0


async def messages(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    req = cpb.ListMessagesRequest(campaign_id=args.id, filter=args.filter, order_by=args.order_by)
    items, resp = await collect(cl.campaigns.ListMessages, req, "messages", args)
    if out.json:
        out.emit(items)
        return 0
    wide = out.console.width >= 120
    cols = ["id", "recipient", "status", *(("result", "error", "sent") if wide else ())]
    rows = [[m.id, m.phone or m.email, enum(c.MessageStatus.Name(m.status)),
             *((enum(cpb.DeliveryResult.Name(m.result)), m.error_description or m.carrier_result,
                ts(m.sent_at)) if wide else ())] for m in items]
    out.print(table(f"messages ({len(items)} of {resp.total_size if resp else 0})", cols,
                    ids=("id",), rows=rows))
    if hint := more_hint(resp, args):
        out.print(hint, soft_wrap=True)
    return 0


async def replies(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    items, resp = await collect(cl.campaigns.ListReplies,
                                cpb.ListRepliesRequest(campaign_id=args.id), "replies", args)
    if out.json:
        out.emit(items)
        return 0
    out.print(table(f"replies ({resp.total_size if resp else 0})", ("message", "from", "text", "at"),
                    ids=("message",), rows=[[r.message_id, getattr(r, "from"), r.text, ts(r.at)]
                                            for r in items]))
    return 0


async def clicks(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    items, resp = await collect(cl.campaigns.ListClicks,
                                cpb.ListClicksRequest(campaign_id=args.id), "clicks", args)
    if out.json:
        out.emit(items)
        return 0
    title = (f"clicks ({resp.total_size if resp else 0}, "
             f"{resp.unique_contacts if resp else 0} contacts)")
    out.print(table(title, ("message", "address", "url", "at"), ids=("message",),
                    rows=[[k.message_id, k.address, k.url, ts(k.at)] for k in items]))
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


async def reconcile(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    rep = await cl.campaigns.ReconcileCampaign(cpb.ReconcileCampaignRequest(
        campaign_id=args.id, repair=args.repair, max_differences=args.max_differences,
        request_id=args.request_id))
    if out.json:
        out.emit(rep)
    else:
        print_reconcile(out, rep)
    return 0 if rep.final else 2


def print_reconcile(out: Output, rep: cpb.ReconcileReport) -> None:
    """Ledger and stats side by side (a differing figure in red), the differing messages and
    the verdict."""
    if rep.repaired:
        out.print("stats rebuilt from the ledger")
    rows = []
    for f in rep.ledger.DESCRIPTOR.fields:
        a, b = getattr(rep.ledger, f.name), getattr(rep.stats, f.name)
        rows.append([f.name, str(a), str(b) if a == b else Text(str(b), style="red")])
    out.print(table(f"reconcile {rep.campaign_id}", ("figure", "ledger", "stats"),
                    right=("ledger", "stats"), rows=rows))
    out.print(f"{rep.compared} messages compared, {rep.differing} differ")
    if rep.differences:
        out.print(table(f"differing messages (first {len(rep.differences)} of {rep.differing})",
                        ("message", "ledger", "stats"), ids=("message",), rows=[
                            [d.message_id, enum(c.MessageStatus.Name(d.ledger_status)),
                             "never seen" if not d.stats_status
                             else enum(c.MessageStatus.Name(d.stats_status))]
                            for d in rep.differences]))
    out.print("[bold green]FINAL[/]" if rep.final else "[bold yellow]NOT FINAL[/]")


def _id_action(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", help="campaign id")
    p.add_argument("--note", default="", help="moderation note / reason")
    p.add_argument("--request-id", default="", help="idempotent retries")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    cr = add(sub, common, "create", create, "create a campaign from flags and/or a YAML/JSON file")
    cr.add_argument("-f", "--file", default="", help="campaign file (.yaml or .json)")
    cr.add_argument("--name")
    cr.add_argument("--channel", choices=("sms", "email"))
    cr.add_argument("--sender")
    cr.add_argument("--description")
    cr.add_argument("--text", help="SMS text or email text part (a template)")
    cr.add_argument("--subject")
    cr.add_argument("--html")
    cr.add_argument("--category", action="append", default=[], help="category name or id (repeatable)")
    cr.add_argument("--contact", action="append", default=[], help="contact id (repeatable)")
    cr.add_argument("--to", action="append", default=[], help="phone or email address (repeatable)")
    cr.add_argument("--mode", choices=sorted(campaign_file.MODES))
    cr.add_argument("--start-at", help="ISO 8601 (no offset: local time)")
    cr.add_argument("--end-at")
    cr.add_argument("--max-rate", type=float, help="messages per second (0 = no cap)")
    cr.add_argument("--draft", action="store_true", help="create as DRAFT (submit later)")
    cr.add_argument("--no-auto-start", action="store_true", help="wait for `start` after approval")
    cr.add_argument("--request-id", default="")

    ls = add(sub, common, "list", list_campaigns, "list campaigns")
    ls.add_argument("--filter", default="", help="e.g. 'status=SENDING,PAUSED channel=SMS'")
    ls.add_argument("--status", default="", help="e.g. SENDING,PAUSED")
    ls.add_argument("--channel", default="", help="SMS or EMAIL")
    ls.add_argument("--mode", default="", help="ON_DEMAND, ON_TIME, SPREAD, TRIGGER")
    ls.add_argument("--period", default="", help="1h, 24h, 7d, 30d, all")
    ls.add_argument("--search", default="", help="id prefix, sender or name")
    ls.add_argument("--order-by", default="created desc")
    ls.add_argument("--archived", action="store_true", help="archived campaigns too")
    ls.add_argument("--archived-only", action="store_true", help="only archived campaigns")
    ls.add_argument("--moderation-queue", action="store_true", help="only NEW campaigns")
    ls.add_argument("--all", action="store_true", help="every status, NEW included")
    paging(ls)

    g = add(sub, common, "get", detail.show, "a campaign's detail page: info, KPIs, tabs, "
            "timeline, state history")
    g.add_argument("id")
    for name, rpc in ACTIONS.items():
        p = add(sub, common, name, action, f"{name} a campaign")
        p.set_defaults(rpc=rpc)
        _id_action(p)
    _id_action(add(sub, common, "delete", delete, "delete a DRAFT, NEW or finished campaign"))
    w = add(sub, common, "watch", watch.watch, "live progress of a campaign until it is final")
    w.add_argument("id")
    w.add_argument("--interval", type=float, default=1.0, help="seconds between updates (default 1)")
    q = add(sub, common, "queue", queue, "campaigns awaiting moderation")
    paging(q)
    kp = add(sub, common, "kpis", kpis, "workspace KPI tiles")
    kp.add_argument("--period", default="all", help="all, 1h, 24h, 7d, 30d")
    au = add(sub, common, "audit", audit, "who did what to a campaign")
    au.add_argument("id")
    paging(au, 200)
    er = add(sub, common, "errors", errors, "job errors of a campaign")
    er.add_argument("id")
    paging(er)
    rt = add(sub, common, "retry", retry, "retry failed messages")
    rt.add_argument("id")
    rt.add_argument("--message", action="append", default=[], help="message id (repeatable)")
    rt.add_argument("--filter", default="", help="e.g. category=THROTTLED")
    rt.add_argument("--request-id", default="")
    pv = add(sub, common, "preview", preview, "render a campaign's content (or --text/--subject/--html)")
    pv.add_argument("id", nargs="?", default="", help="campaign id (omit for inline content)")
    pv.add_argument("--contact", default="", help="render for this contact id")
    pv.add_argument("--variant", default="")
    pv.add_argument("--channel", choices=("sms", "email"), default="sms")
    pv.add_argument("--text", default="")
    pv.add_argument("--subject", default="")
    pv.add_argument("--html", default="")
    pv.add_argument("--first-name", default="", help="sample recipient's first name")
    pv.add_argument("--field", action="append", default=[], help="sample field name=value (repeatable)")
    pr = add(sub, common, "promote", promote, "A/B: send the winning variant to the held audience")
    pr.add_argument("id")
    pr.add_argument("variant")
    pr.add_argument("--request-id", default="")
    ex = add(sub, common, "export", export, "export the send detail to a CSV (or TXT) file")
    ex.add_argument("id")
    ex.add_argument("--filter", default="")
    ex.add_argument("--txt", action="store_true")
    ex.add_argument("-o", "--output", default="")
    tr = add(sub, common, "trigger", trigger, "TRIGGER campaigns: send one message")
    tr.add_argument("id")
    tr.add_argument("--phone", default="")
    tr.add_argument("--email", default="")
    tr.add_argument("--contact", default="")
    tr.add_argument("--field", action="append", default=[], help="name=value (repeatable)")
    tr.add_argument("--request-id", default="")
    ms = add(sub, common, "messages", messages, "the send detail of a campaign")
    ms.add_argument("id")
    ms.add_argument("--filter", default="",
                    help="e.g. status=FAILED, result=failed, stage=submitted, category=THROTTLED")
    ms.add_argument("--order-by", default="")
    paging(ms)
    rp = add(sub, common, "replies", replies, "inbound replies to a campaign")
    rp.add_argument("id")
    paging(rp)
    ck = add(sub, common, "clicks", clicks, "who clicked what in a campaign")
    ck.add_argument("id")
    paging(ck)
    add(sub, common, "stats", stats, "campaign stats").add_argument("id")
    rc = add(sub, common, "reconcile", reconcile, "ledger beside stats, message by message: are "
             "the figures final? (exit 0 final, 2 not final)")
    rc.add_argument("id")
    rc.add_argument("--repair", action="store_true",
                    help="rebuild the campaign's stats from the ledger first (operator)")
    rc.add_argument("--max-differences", type=int, default=100, help="messages listed (at most 1000)")
    rc.add_argument("--request-id", default="")
