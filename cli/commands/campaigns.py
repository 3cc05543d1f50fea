"""Campaign commands: the parser of CampaignService's commands (names, arguments, help), in
the order `herald --help` lists them. The handlers live by job: campaign_create (create,
preview), campaign_list (list, queue, kpis, stats), detail (get), campaign_actions (the
lifecycle actions, delete, retry, promote, trigger), watch, campaign_reports (messages,
replies, clicks, audit, errors, export, reconcile)."""

from __future__ import annotations

import argparse
from typing import Any

from cli import campaign_file
from cli.commands import add, detail, paging, watch
from cli.commands.campaign_actions import ACTIONS, action, delete, promote, retry, trigger
from cli.commands.campaign_create import create, preview, preview_request
from cli.commands.campaign_list import (
    kpis,
    list_campaigns,
    list_filter,
    progress_cell,
    queue,
    stats,
    status,
)
from cli.commands.campaign_reports import (
    audit,
    clicks,
    errors,
    export,
    messages,
    print_reconcile,
    reconcile,
    replies,
)

__all__ = ["ACTIONS", "action", "audit", "clicks", "create", "delete", "errors", "export", "kpis",
           "list_campaigns", "list_filter", "messages", "preview", "preview_request",
           "print_reconcile", "progress_cell", "promote", "queue", "reconcile", "register",
           "replies", "retry", "stats", "status", "trigger"]


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
    ex.add_argument("--wait", type=float, default=600.0,
                    help="seconds to wait for the export to be built (it goes on building after)")
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
