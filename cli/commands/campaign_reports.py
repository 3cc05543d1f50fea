"""A campaign's records: its messages (the send detail), replies, clicks, audit trail, job
errors, the export to a file, and the reconciliation of the ledger with stats."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import common_pb2 as c
from rich.text import Text

from cli.commands import collect, more_hint
from cli.connect import Clients
from cli.output import Output, enum, table, ts


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


async def export(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    ex = await cl.campaigns.CreateExport(cpb.CreateExportRequest(
        campaign_id=args.id, filter=args.filter,
        format=cpb.EXPORT_FORMAT_TXT if args.txt else cpb.EXPORT_FORMAT_CSV))
    deadline, shown = time.monotonic() + args.wait, ""
    while True:
        ex = await cl.campaigns.GetExport(cpb.GetExportRequest(id=ex.id))
        if ex.status not in (cpb.EXPORT_STATUS_QUEUED, cpb.EXPORT_STATUS_RUNNING) \
                or time.monotonic() >= deadline:
            break
        if ex.status_detail != shown and not out.json:  # progress, on stderr
            shown = ex.status_detail
            out.err.print(f"export {ex.id}: {shown}", markup=False, highlight=False, soft_wrap=True)
        await asyncio.sleep(0.2)
    if ex.status != cpb.EXPORT_STATUS_DONE:
        out.error(f"export {ex.id} {enum(cpb.ExportStatus.Name(ex.status))}: {ex.status_detail or ex.error}")
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
