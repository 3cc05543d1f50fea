"""CampaignService gRPC implementation."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from herald.v1 import campaigns_pb2 as pb
from herald.v1 import campaigns_pb2_grpc as pb_grpc
from herald.v1 import common_pb2 as c
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.campaigns import lifecycle
from services.campaigns.schema import campaigns, messages
from services.campaigns.store import (
    Store,
    decode_token,
    encode_token,
    message_status_filter,
    new_id,
)
from shared import auth
from shared.errors import invalid, not_found, precondition
from shared.timeutil import Clock, aware, from_ts, to_ts

log = logging.getLogger("herald.campaigns")

MAX_PAGE = 1000
DEFAULT_PAGE = 50
MODES = {pb.CAMPAIGN_MODE_ON_DEMAND, pb.CAMPAIGN_MODE_ON_TIME, pb.CAMPAIGN_MODE_SPREAD,
         pb.CAMPAIGN_MODE_TRIGGER}
ORDERABLE = {"created": campaigns.c.created_at, "created_at": campaigns.c.created_at,
             "start": campaigns.c.start_at, "start_at": campaigns.c.start_at,
             "sender": campaigns.c.sender}


def page_size(requested: int) -> int:
    if requested < 0:
        raise invalid({"page_size": "must not be negative"})
    return min(requested or DEFAULT_PAGE, MAX_PAGE)


def validate_create(req: pb.CreateCampaignRequest) -> None:
    cp = req.campaign
    bad: dict[str, str] = {}
    if cp.channel not in (c.CHANNEL_SMS, c.CHANNEL_EMAIL):
        bad["campaign.channel"] = "must be CHANNEL_SMS or CHANNEL_EMAIL"
    mode = cp.mode or pb.CAMPAIGN_MODE_ON_DEMAND
    if mode not in MODES:
        bad["campaign.mode"] = "unknown mode"
    if not cp.sender.strip():
        bad["campaign.sender"] = "required (SMS source address or email From)"
    if cp.channel == c.CHANNEL_SMS and not cp.content.text.strip():
        bad["campaign.content.text"] = "required for SMS"
    if cp.channel == c.CHANNEL_EMAIL:
        if not cp.content.subject.strip():
            bad["campaign.content.subject"] = "required for email"
        if not (cp.content.html.strip() or cp.content.text.strip()):
            bad["campaign.content.html"] = "an HTML or text body is required for email"
    start, end = from_ts(cp.start_at if cp.HasField("start_at") else None), from_ts(
        cp.end_at if cp.HasField("end_at") else None)
    if mode in (pb.CAMPAIGN_MODE_ON_TIME, pb.CAMPAIGN_MODE_SPREAD) and start is None:
        bad["campaign.start_at"] = "required for ON_TIME and SPREAD campaigns"
    if mode == pb.CAMPAIGN_MODE_SPREAD and end is None:
        bad["campaign.end_at"] = "required for SPREAD campaigns"
    if start and end and end <= start:
        bad["campaign.end_at"] = "must be after start_at"
    if not req.recipients and not cp.category_ids and mode != pb.CAMPAIGN_MODE_TRIGGER:
        bad["recipients"] = "give inline recipients or campaign.category_ids"
    for i, r in enumerate(req.recipients):
        if not (r.phone or r.email or r.contact_id):
            bad[f"recipients[{i}]"] = "needs a phone, an email or a contact_id"
    if bad:
        raise invalid(bad)


class CampaignServicer(pb_grpc.CampaignServiceServicer):
    def __init__(self, store: Store, clock: Clock | None = None,
                 on_cancel: Callable[[str], Awaitable[None]] | None = None) -> None:
        self.store = store
        self.clock = clock or Clock()
        self.on_cancel = on_cancel

    # --- create / read -----------------------------------------------------------------
    async def CreateCampaign(self, request: pb.CreateCampaignRequest, context: Any) -> pb.Campaign:
        p = auth.current()
        p.require("operator")
        if (prev := await self.store.replay(p.workspace, "CreateCampaign", request.request_id,
                                            pb.Campaign)) is not None:
            return prev
        validate_create(request)
        cp, now, cid = request.campaign, self.clock.now(), new_id()
        status = lifecycle.DRAFT if request.draft else lifecycle.NEW
        values = dict(
            id=cid, workspace_id=p.workspace, name=cp.name, channel=cp.channel, status=status,
            mode=cp.mode or pb.CAMPAIGN_MODE_ON_DEMAND, sender=cp.sender.strip(), author=p.name,
            content_text=cp.content.text, content_subject=cp.content.subject,
            content_html=cp.content.html, template_name=cp.content.template_name,
            category_ids=list(cp.category_ids),
            start_at=from_ts(cp.start_at) if cp.HasField("start_at") else None,
            end_at=from_ts(cp.end_at) if cp.HasField("end_at") else None,
            auto_start=cp.auto_start, moderation=pb.MODERATION_STATE_PENDING,
            recipients_count=len(request.recipients), created_at=now, updated_at=now,
        )
        async with self.store.engine.begin() as conn:
            await conn.execute(insert(campaigns).values(**values))
            await self.store.save_targets(conn, cid, list(request.recipients))
            await self.store.add_history(conn, cid, status, "created", p.name, now)
            row = await self.store.get_row(conn, cid, p.workspace)
            result = self.store.to_proto(row, pb.Progress(), await self.store.history(conn, cid))
            await self.store.remember(conn, p.workspace, "CreateCampaign", request.request_id,
                                      result, now)
        log.info("campaign created", extra={"campaign_id": cid, "workspace": p.workspace,
                                            "recipients": len(request.recipients)})
        return result

    async def GetCampaign(self, request: pb.GetCampaignRequest, context: Any) -> pb.Campaign:
        p = auth.current()
        if not request.id:
            raise invalid({"id": "required"})
        cp = await self.store.load(request.id, None if p.master else p.workspace)
        if cp is None:
            raise not_found("campaign", request.id)
        return cp

    async def ListCampaigns(self, request: pb.ListCampaignsRequest, context: Any) -> pb.ListCampaignsResponse:
        p = auth.current()
        size, offset = page_size(request.page_size), decode_token(request.page_token)
        conds = [] if p.master else [campaigns.c.workspace_id == p.workspace]
        if not request.show_archived:
            conds.append(campaigns.c.archived.is_(False))
        for term in filter(None, request.filter.replace(" AND ", " ").split()):
            key, sep, val = term.partition("=")
            vals = [v.strip().upper() for v in val.split(",") if v.strip()]
            if not sep or not vals:
                raise invalid({"filter": f"term {term!r} is not key=value"})
            try:
                if key == "status":
                    for v in vals:
                        lifecycle.value(v)
                    conds.append(campaigns.c.status.in_(vals))
                elif key == "channel":
                    conds.append(campaigns.c.channel.in_([c.Channel.Value(f"CHANNEL_{v}") for v in vals]))
                elif key == "mode":
                    conds.append(campaigns.c.mode.in_(
                        [pb.CampaignMode.Value(f"CAMPAIGN_MODE_{v}") for v in vals]))
                else:
                    raise invalid({"filter": f"unknown field {key!r} (status, channel, mode)"})
            except ValueError as exc:
                raise invalid({"filter": f"unknown value in {term!r}"}) from exc
        order = request.order_by.strip() or "created desc"
        parts = order.split()
        col = ORDERABLE.get(parts[0])
        if col is None or len(parts) > 2 or (len(parts) == 2 and parts[1] not in ("asc", "desc")):
            raise invalid({"order_by": f"{order!r}: use one of {sorted(ORDERABLE)} [asc|desc]"})
        ordering = [col.desc() if parts[-1] == "desc" else col.asc(), campaigns.c.id]
        async with self.store.engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(campaigns).where(*conds))).scalar_one()
            rows = (await conn.execute(select(campaigns).where(*conds).order_by(*ordering)
                                       .limit(size).offset(offset))).mappings().all()
            prog = await self.store.progress(conn, [r["id"] for r in rows])
        resp = pb.ListCampaignsResponse(total_size=total)
        resp.campaigns.extend(self.store.to_proto(r, prog[r["id"]]) for r in rows)
        if offset + len(rows) < total:
            resp.next_page_token = encode_token(offset + len(rows))
        return resp

    # --- transitions -----------------------------------------------------------------------
    async def _act(self, request: pb.CampaignActionRequest, method: str, role: str,
                   change: Callable[[AsyncConnection, Any, auth.Principal], Awaitable[None]]) -> pb.Campaign:
        p = auth.current()
        p.require(role)
        if not request.id:
            raise invalid({"id": "required"})
        if (prev := await self.store.replay(p.workspace, method, request.request_id, pb.Campaign)) is not None:
            return prev
        async with self.store.engine.begin() as conn:
            row = await self.store.get_row(conn, request.id, p.workspace, for_update=True)
            if row is None:
                raise not_found("campaign", request.id)
            await change(conn, row, p)
            row = await self.store.get_row(conn, request.id, p.workspace)
            prog = (await self.store.progress(conn, [request.id]))[request.id]
            result = self.store.to_proto(row, prog, await self.store.history(conn, request.id))
            await self.store.remember(conn, p.workspace, method, request.request_id, result,
                                      self.clock.now())
        log.info("campaign %s", method, extra={"campaign_id": request.id, "actor": p.name,
                                               "status": row["status"]})
        return result

    async def SubmitCampaign(self, request: pb.CampaignActionRequest, context: Any) -> pb.Campaign:
        async def change(conn: AsyncConnection, row: Any, p: auth.Principal) -> None:
            await Store.set_status(conn, row, lifecycle.NEW, "submitted for moderation", p.name,
                                   self.clock.now())
        return await self._act(request, "SubmitCampaign", "operator", change)

    async def ApproveCampaign(self, request: pb.CampaignActionRequest, context: Any) -> pb.Campaign:
        async def change(conn: AsyncConnection, row: Any, p: auth.Principal) -> None:
            if row["status"] != lifecycle.NEW or row["moderation"] != pb.MODERATION_STATE_PENDING:
                raise precondition(f"campaigns/{row['id']}", "MODERATION",
                                   f"campaign {row['id']} is {row['status']} with moderation "
                                   f"{pb.ModerationState.Name(row['moderation'])}; only NEW campaigns "
                                   "awaiting moderation can be approved")
            now = self.clock.now()
            await conn.execute(update(campaigns).where(campaigns.c.id == row["id"]).values(
                moderation=pb.MODERATION_STATE_APPROVED, moderation_note=request.note, updated_at=now))
            if row["auto_start"]:
                await Store.set_status(conn, row, lifecycle.PENDING, "approved (auto-start)", p.name, now)
            else:
                await Store.add_history(conn, row["id"], lifecycle.NEW, "approved", p.name, now)
        return await self._act(request, "ApproveCampaign", "moderator", change)

    async def RejectCampaign(self, request: pb.CampaignActionRequest, context: Any) -> pb.Campaign:
        async def change(conn: AsyncConnection, row: Any, p: auth.Principal) -> None:
            if row["status"] != lifecycle.NEW:
                raise lifecycle.illegal(row["id"], row["status"], lifecycle.CANCELLED)
            now = self.clock.now()
            await conn.execute(update(campaigns).where(campaigns.c.id == row["id"]).values(
                moderation=pb.MODERATION_STATE_REJECTED, moderation_note=request.note))
            await Store.set_status(conn, row, lifecycle.CANCELLED,
                                   f"rejected: {request.note}" if request.note else "rejected",
                                   p.name, now, completed_at=now)
        return await self._act(request, "RejectCampaign", "moderator", change)

    async def StartCampaign(self, request: pb.CampaignActionRequest, context: Any) -> pb.Campaign:
        async def change(conn: AsyncConnection, row: Any, p: auth.Principal) -> None:
            if row["status"] == lifecycle.NEW and row["moderation"] != pb.MODERATION_STATE_APPROVED:
                raise precondition(f"campaigns/{row['id']}", "MODERATION",
                                   f"campaign {row['id']} awaits moderation; approve it first")
            await Store.set_status(conn, row, lifecycle.PENDING, "started", p.name, self.clock.now())
        return await self._act(request, "StartCampaign", "operator", change)

    async def PauseCampaign(self, request: pb.CampaignActionRequest, context: Any) -> pb.Campaign:
        async def change(conn: AsyncConnection, row: Any, p: auth.Principal) -> None:
            await Store.set_status(conn, row, lifecycle.PAUSED, request.note or "paused by operator",
                                   p.name, self.clock.now())
        return await self._act(request, "PauseCampaign", "operator", change)

    async def ResumeCampaign(self, request: pb.CampaignActionRequest, context: Any) -> pb.Campaign:
        async def change(conn: AsyncConnection, row: Any, p: auth.Principal) -> None:
            if row["status"] != lifecycle.PAUSED:
                raise lifecycle.illegal(row["id"], row["status"], lifecycle.SENDING)
            await Store.set_status(conn, row, lifecycle.SENDING, "resumed", p.name, self.clock.now())
        return await self._act(request, "ResumeCampaign", "operator", change)

    async def CancelCampaign(self, request: pb.CampaignActionRequest, context: Any) -> pb.Campaign:
        async def change(conn: AsyncConnection, row: Any, p: auth.Principal) -> None:
            now = self.clock.now()
            await Store.set_status(conn, row, lifecycle.CANCELLED, request.note or "cancelled",
                                   p.name, now, completed_at=now)
        result = await self._act(request, "CancelCampaign", "operator", change)
        if self.on_cancel is not None:
            await self.on_cancel(request.id)
        return result

    # --- ledger ------------------------------------------------------------------------------
    async def ListMessages(self, request: pb.ListMessagesRequest, context: Any) -> pb.ListMessagesResponse:
        p = auth.current()
        if not request.campaign_id:
            raise invalid({"campaign_id": "required"})
        size, offset = page_size(request.page_size), decode_token(request.page_token)
        statuses = message_status_filter(request.filter)
        order = request.order_by.strip() or "created"
        if order not in ("created", "created_at", "created desc", "created_at desc"):
            raise invalid({"order_by": "use created [desc]"})
        desc = order.endswith("desc")
        async with self.store.engine.connect() as conn:
            if await self.store.get_row(conn, request.campaign_id,
                                        None if p.master else p.workspace) is None:
                raise not_found("campaign", request.campaign_id)
            conds = [messages.c.campaign_id == request.campaign_id]
            if statuses:
                conds.append(messages.c.status.in_(statuses))
            total = (await conn.execute(select(func.count()).select_from(messages).where(*conds))).scalar_one()
            ordering = ([messages.c.created_at.desc(), messages.c.id.desc()] if desc
                        else [messages.c.created_at, messages.c.id])
            rows = (await conn.execute(select(messages).where(*conds).order_by(*ordering)
                                       .limit(size).offset(offset))).mappings().all()
        resp = pb.ListMessagesResponse(total_size=total)
        for r in rows:
            resp.messages.append(message_proto(r, p))
        if offset + len(rows) < total:
            resp.next_page_token = encode_token(offset + len(rows))
        return resp


def message_proto(r: Any, p: auth.Principal) -> pb.Message:
    m = pb.Message(
        id=r["id"], campaign_id=r["campaign_id"], contact_id=r["contact_id"],
        contact_name=r["contact_name"], channel=r["channel"], status=r["status"],
        carrier_result=r["carrier_result"], error_code=r["error_code"],
        error_description=r["error_description"], failure_category=r["failure_category"],
        views=r["views"], clicks=r["clicks"], replies=r["replies"], variant=r["variant"],
        content_preview=r["content_preview"], provider_message_id=r["provider_message_id"],
        attempt=r["attempt"], fields=r["fields"] or {},
    )
    if r["channel"] == c.CHANNEL_SMS:
        m.phone = auth.mask_phone(r["address"], p)
    else:
        m.email = r["address"]
    for fld in ("created_at", "sent_at", "delivered_at"):
        ts = to_ts(aware(r[fld]))
        if ts is not None:
            getattr(m, fld).CopyFrom(ts)
    return m


__all__ = ["CampaignServicer", "grpc"]
