"""`herald create` (a campaign from flags and/or a YAML/JSON file) and `herald preview` (its
content rendered for a contact or a sample recipient)."""

from __future__ import annotations

import argparse
from pathlib import Path

from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import common_pb2 as c
from rich.text import Text

from cli import campaign_file
from cli.commands import category_ids
from cli.commands.campaign_list import status
from cli.connect import Clients
from cli.output import Output


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
