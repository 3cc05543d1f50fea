"""What an operator does to a campaign: the lifecycle actions (submit, approve, reject, start,
pause, resume, cancel, archive, restore), delete, retry, promote and trigger."""

from __future__ import annotations

import argparse

from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import common_pb2 as c

from cli.commands.campaign_list import status
from cli.connect import Clients
from cli.output import Output, enum, table

ACTIONS = {"submit": "SubmitCampaign", "approve": "ApproveCampaign", "reject": "RejectCampaign",
           "start": "StartCampaign", "pause": "PauseCampaign", "resume": "ResumeCampaign",
           "cancel": "CancelCampaign", "archive": "ArchiveCampaign", "restore": "RestoreCampaign"}


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


async def promote(args: argparse.Namespace, cl: Clients, out: Output) -> int:
    cp = await cl.campaigns.PromoteVariant(cpb.PromoteVariantRequest(
        campaign_id=args.id, variant=args.variant, request_id=args.request_id))
    if out.json:
        out.emit(cp)
    else:
        out.print(f"{cp.id}: winner {cp.winner}", soft_wrap=True)
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
