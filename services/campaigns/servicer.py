"""CampaignService gRPC implementation."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import grpc
from herald.v1 import campaigns_pb2 as pb
from herald.v1 import campaigns_pb2_grpc as pb_grpc
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from herald.v1 import recipients_pb2 as rpb
from herald.v1 import recipients_pb2_grpc as rgrpc
from nats.js import JetStreamContext
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.campaigns import exports as exports_mod
from services.campaigns import lifecycle, window
from services.campaigns.filters import campaign_filter, message_filter, period_delta
from services.campaigns.schema import (
    audit_events,
    campaign_targets,
    campaigns,
    clicks,
    exports,
    job_errors,
    messages,
    replies,
    state_history,
)
from services.campaigns.store import Store, decode_token, encode_token, new_id
from shared import auth, bus, states
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


MODERATED_FIELDS = {"sender", "content", "category_ids", "mode", "channel", "variants"}
EDITABLE_FIELDS = {"name", "description", "sender", "content", "category_ids", "start_at", "end_at",
                   "mode", "auto_start", "window", "max_rate", "auto_pause_failures", "variants",
                   "test_percent"}


def validate_campaign(cp: pb.Campaign, has_audience: bool, prefix: str = "campaign.") -> dict[str, str]:
    bad: dict[str, str] = {}
    if cp.channel not in (c.CHANNEL_SMS, c.CHANNEL_EMAIL):
        bad[prefix + "channel"] = "must be CHANNEL_SMS or CHANNEL_EMAIL"
    mode = cp.mode or pb.CAMPAIGN_MODE_ON_DEMAND
    if mode not in MODES:
        bad[prefix + "mode"] = "unknown mode"
    if not cp.sender.strip():
        bad[prefix + "sender"] = "required (SMS source address or email From)"
    if cp.channel == c.CHANNEL_SMS and not cp.content.text.strip() and not cp.variants:
        bad[prefix + "content.text"] = "required for SMS"
    if cp.channel == c.CHANNEL_EMAIL and not cp.variants:
        if not cp.content.subject.strip():
            bad[prefix + "content.subject"] = "required for email"
        if not (cp.content.html.strip() or cp.content.text.strip()):
            bad[prefix + "content.html"] = "an HTML or text body is required for email"
    start = from_ts(cp.start_at) if cp.HasField("start_at") else None
    end = from_ts(cp.end_at) if cp.HasField("end_at") else None
    if mode in (pb.CAMPAIGN_MODE_ON_TIME, pb.CAMPAIGN_MODE_SPREAD) and start is None:
        bad[prefix + "start_at"] = "required for ON_TIME and SPREAD campaigns"
    if mode == pb.CAMPAIGN_MODE_SPREAD and end is None:
        bad[prefix + "end_at"] = "required for SPREAD campaigns"
    if start and end and end <= start:
        bad[prefix + "end_at"] = "must be after start_at"
    if not has_audience and mode != pb.CAMPAIGN_MODE_TRIGGER:
        bad["recipients"] = "give inline recipients or campaign.category_ids"
    if cp.max_rate < 0:
        bad[prefix + "max_rate"] = "must not be negative"
    if cp.auto_pause_failures < -1:
        bad[prefix + "auto_pause_failures"] = "-1 (never), 0 (default) or a positive count"
    bad.update(validate_variants(cp, prefix))
    if cp.HasField("window"):
        bad.update({k.replace("campaign.", prefix, 1): v for k, v in window.validate(
            cp.window.start, cp.window.end, cp.window.time_zone).items()})
    return bad


def validate_variants(cp: pb.Campaign, prefix: str) -> dict[str, str]:
    bad: dict[str, str] = {}
    if not cp.variants:
        if cp.test_percent:
            bad[prefix + "test_percent"] = "only with variants"
        return bad
    if len(cp.variants) < 2:
        bad[prefix + "variants"] = "an A/B test needs at least two variants"
    names = [v.name.strip() for v in cp.variants]
    if any(not n or ":" in n or len(n) > 32 for n in names) or len(set(names)) != len(names):
        bad[prefix + "variants"] = "names must be unique, 1-32 characters, without ':'"
    if sum(v.split_percent for v in cp.variants) != 100 or any(v.split_percent <= 0 for v in cp.variants):
        bad[prefix + "variants"] = "split_percent values must be positive and add up to 100"
    if not 0 <= cp.test_percent <= 100:
        bad[prefix + "test_percent"] = "0 (everyone) to 100"
    for i, v in enumerate(cp.variants):
        if cp.channel == c.CHANNEL_SMS and not v.content.text.strip():
            bad[f"{prefix}variants[{i}].content.text"] = "required for SMS"
        if cp.channel == c.CHANNEL_EMAIL and not (v.content.subject.strip() and
                                                 (v.content.html.strip() or v.content.text.strip())):
            bad[f"{prefix}variants[{i}].content"] = "subject and an HTML or text body are required"
    return bad


def validate_create(req: pb.CreateCampaignRequest) -> None:
    bad = validate_campaign(req.campaign, bool(req.recipients or req.campaign.category_ids))
    for i, r in enumerate(req.recipients):
        if not (r.phone or r.email or r.contact_id):
            bad[f"recipients[{i}]"] = "needs a phone, an email or a contact_id"
    if bad:
        raise invalid(bad)


def column_values(cp: pb.Campaign, fields: set[str]) -> dict[str, Any]:
    """SQL column values for the named Campaign fields."""
    out: dict[str, Any] = {}
    if "name" in fields:
        out["name"] = cp.name
    if "description" in fields:
        out["description"] = cp.description
    if "sender" in fields:
        out["sender"] = cp.sender.strip()
    if "content" in fields:
        out.update(content_text=cp.content.text, content_subject=cp.content.subject,
                   content_html=cp.content.html, template_name=cp.content.template_name)
    if "category_ids" in fields:
        out["category_ids"] = list(cp.category_ids)
    if "start_at" in fields:
        out["start_at"] = from_ts(cp.start_at) if cp.HasField("start_at") else None
    if "end_at" in fields:
        out["end_at"] = from_ts(cp.end_at) if cp.HasField("end_at") else None
    if "mode" in fields:
        out["mode"] = cp.mode or pb.CAMPAIGN_MODE_ON_DEMAND
    if "auto_start" in fields:
        out["auto_start"] = cp.auto_start
    if "window" in fields:
        w = cp.window if cp.HasField("window") else pb.SendingWindow()
        out.update(window_start=w.start, window_end=w.end, window_tz=w.time_zone)
    if "max_rate" in fields:
        out["max_rate"] = cp.max_rate
    if "auto_pause_failures" in fields:
        out["auto_pause_failures"] = cp.auto_pause_failures
    if "variants" in fields:
        out["variants"] = [{"name": v.name.strip(), "split_percent": v.split_percent,
                            "content": {"text": v.content.text, "subject": v.content.subject,
                                        "html": v.content.html, "template_name": v.content.template_name}}
                           for v in cp.variants] or None
    if "test_percent" in fields:
        out["test_percent"] = cp.test_percent
    return out


def jsonable(value: Any) -> str:
    if isinstance(value, datetime):
        return json.dumps(aware(value).isoformat())
    return json.dumps(value, sort_keys=True, default=str)


TRIGGER_NS = uuid.UUID("9d7e1c1a-3f0b-4a55-8b7e-2d7c5a1e0f42")


class CampaignServicer(pb_grpc.CampaignServiceServicer):
    def __init__(self, store: Store, clock: Clock | None = None,
                 on_cancel: Callable[[str], Awaitable[None]] | None = None,
                 recipients: rgrpc.RecipientServiceStub | None = None,
                 js: JetStreamContext | None = None,
                 on_trigger: Callable[[], None] | None = None) -> None:
        self.store = store
        self.clock = clock or Clock()
        self.on_cancel = on_cancel
        self.recipients = recipients
        self.js = js
        self.on_trigger = on_trigger

    # --- create / read -----------------------------------------------------------------
    async def CreateCampaign(self, request: pb.CreateCampaignRequest, context: Any) -> pb.Campaign:
        p = auth.current()
        p.require("operator")
        if (prev := await self.store.replay(p.workspace, "CreateCampaign", request.request_id,
                                            pb.Campaign)) is not None:
            return prev
        if request.source_campaign_id:
            request = await self.with_source_recipients(request, p)
        validate_create(request)
        cp, now, cid = request.campaign, self.clock.now(), new_id()
        status = lifecycle.DRAFT if request.draft else lifecycle.NEW
        values = dict(
            id=cid, workspace_id=p.workspace, channel=cp.channel, status=status, author=p.name,
            moderation=pb.MODERATION_STATE_PENDING, recipients_count=len(request.recipients),
            created_at=now, updated_at=now, **column_values(cp, EDITABLE_FIELDS),
        )
        async with self.store.engine.begin() as conn:
            await conn.execute(insert(campaigns).values(**values))
            await self.store.save_targets(conn, cid, list(request.recipients))
            await self.store.add_history(conn, cid, status, "created", p.name, now)
            row = await self.store.get_row(conn, cid, p.workspace)
            await Store.audit(conn, row, "created", p.name, now)
            result = self.store.to_proto(row, pb.Progress(), await self.store.history(conn, cid))
            await self.store.remember(conn, p.workspace, "CreateCampaign", request.request_id,
                                      result, now)
        log.info("campaign created", extra={"campaign_id": cid, "workspace": p.workspace,
                                            "recipients": len(request.recipients)})
        return result

    async def with_source_recipients(self, request: pb.CreateCampaignRequest,
                                     p: auth.Principal) -> pb.CreateCampaignRequest:
        """Add the recipients of another campaign (by default its failed ones) inline."""
        flt = request.source_filter or "result=failed"
        conds = message_filter(flt)
        async with self.store.engine.connect() as conn:
            src = await self.store.get_row(conn, request.source_campaign_id, p.workspace)
            if src is None:
                raise invalid({"source_campaign_id": f"campaign {request.source_campaign_id} not found"})
            rows = (await conn.execute(select(messages).where(
                messages.c.campaign_id == src["id"], *conds).order_by(messages.c.created_at))).mappings().all()
        out = pb.CreateCampaignRequest()
        out.CopyFrom(request)
        channel = request.campaign.channel or src["channel"]
        if channel != src["channel"]:
            raise invalid({"source_campaign_id": "the source campaign is on another channel"})
        for r in rows:
            first, _, last = r["contact_name"].partition(" ")
            rec = c.Recipient(contact_id=r["contact_id"], first_name=first, last_name=last,
                              fields=r["fields"] or {})
            if channel == c.CHANNEL_SMS:
                rec.phone = r["address"]
            else:
                rec.email = r["address"]
            if r["address"]:
                out.recipients.append(rec)
        return out

    async def GetCampaign(self, request: pb.GetCampaignRequest, context: Any) -> pb.Campaign:
        p = auth.current()
        if not request.id:
            raise invalid({"id": "required"})
        cp = await self.store.load(request.id, None if p.master else p.workspace)
        if cp is None:
            raise not_found("campaign", request.id)
        cp.category_names.extend(await self.category_names(cp))
        return cp

    async def category_names(self, cp: pb.Campaign) -> list[str]:
        """Best effort: the recipients service names the categories; ids stand in for names
        when it cannot answer quickly (the page must not fail for a label)."""
        if not cp.category_ids or self.recipients is None:
            return list(cp.category_ids)
        names: dict[str, str] = {}
        token = ""
        try:
            for _ in range(50):
                page = await self.recipients.ListCategories(
                    rpb.ListCategoriesRequest(page_size=1000, page_token=token),
                    metadata=auth.call_metadata(workspace=cp.workspace_id), timeout=2)
                names.update({cat.id: cat.name for cat in page.categories})
                token = page.next_page_token
                if not token or all(i in names for i in cp.category_ids):
                    break
        except grpc.aio.AioRpcError as exc:
            log.warning("category names unavailable", extra={"code": exc.code().name})
        return [names.get(i, i) for i in cp.category_ids]

    async def ListCampaigns(self, request: pb.ListCampaignsRequest, context: Any) -> pb.ListCampaignsResponse:
        p = auth.current()
        size, offset = page_size(request.page_size), decode_token(request.page_token)
        conds = campaign_filter(request.filter, p, self.clock.now())
        if request.archived_only:
            conds.append(campaigns.c.archived.is_(True))
        elif not request.show_archived:
            conds.append(campaigns.c.archived.is_(False))
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

    async def GetCampaignKpis(self, request: pb.GetCampaignKpisRequest, context: Any) -> pb.CampaignKpis:
        p = auth.current()
        conds = [campaigns.c.workspace_id == p.workspace]
        if request.period and request.period != "all":
            conds.append(campaigns.c.created_at >= self.clock.now() - period_delta(request.period))
        async with self.store.engine.connect() as conn:
            counts = dict((await conn.execute(select(campaigns.c.status, func.count()).where(*conds)
                                              .group_by(campaigns.c.status))).all())
            waiting = (await conn.execute(select(func.count()).select_from(campaigns).where(
                *conds, campaigns.c.status == lifecycle.NEW,
                campaigns.c.moderation == pb.MODERATION_STATE_PENDING))).scalar_one()
            delivered = (await conn.execute(select(func.count()).select_from(messages).join(
                campaigns, campaigns.c.id == messages.c.campaign_id).where(
                *conds, messages.c.status == c.MESSAGE_STATUS_DELIVERED))).scalar_one()
        return pb.CampaignKpis(
            total_campaigns=sum(counts.values()),
            active=sum(counts.get(s, 0) for s in lifecycle.ACTIVE),
            completed=counts.get(lifecycle.DONE, 0), errors=counts.get(lifecycle.FAILED, 0),
            messages_delivered=delivered, awaiting_moderation=waiting)

    async def ListAuditEvents(self, request: pb.ListAuditEventsRequest, context: Any) -> pb.ListAuditEventsResponse:
        p = auth.current()
        if not request.campaign_id:
            raise invalid({"campaign_id": "required"})
        size, offset = page_size(request.page_size), decode_token(request.page_token)
        conds = [audit_events.c.campaign_id == request.campaign_id]
        if not p.master:
            conds.append(audit_events.c.workspace_id == p.workspace)
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(select(audit_events).where(*conds).order_by(audit_events.c.id)
                                       .limit(size + 1).offset(offset))).mappings().all()
        if not rows and offset == 0:
            raise not_found("campaign", request.campaign_id)
        resp = pb.ListAuditEventsResponse()
        for r in rows[:size]:
            resp.events.append(pb.AuditEvent(
                id=r["id"], campaign_id=r["campaign_id"], action=r["action"], actor=r["actor"],
                note=r["note"], before=r["before"] or {}, after=r["after"] or {}, at=to_ts(aware(r["at"]))))
        if len(rows) > size:
            resp.next_page_token = encode_token(offset + size)
        return resp

    # --- shared prologue of mutating RPCs -------------------------------------------------
    async def _begin(self, method: str, request_id: str, cls: type, field: str, value: str,
                     *roles: str) -> tuple[auth.Principal, Any]:
        """Role check, required id, and the first answer when request_id is a retry."""
        p = auth.current()
        p.require(*roles)
        if not value:
            raise invalid({field: "required"})
        return p, await self.store.replay(p.workspace, method, request_id, cls)

    async def _locked(self, conn: AsyncConnection, campaign_id: str, p: auth.Principal) -> Any:
        row = await self.store.get_row(conn, campaign_id, p.workspace, for_update=True)
        if row is None:
            raise not_found("campaign", campaign_id)
        return row

    # --- transitions -----------------------------------------------------------------------
    async def _act(self, request: pb.CampaignActionRequest, method: str, role: str,
                   change: Callable[[AsyncConnection, Any, auth.Principal], Awaitable[None]],
                   action: str = "") -> pb.Campaign:
        p, prev = await self._begin(method, request.request_id, pb.Campaign, "id", request.id, role)
        if prev is not None:
            return prev
        async with self.store.engine.begin() as conn:
            row = await self._locked(conn, request.id, p)
            before = row
            await change(conn, row, p)
            row = await self.store.get_row(conn, request.id, p.workspace)
            changed = {k for k in ("status", "moderation", "archived") if before[k] != row[k]}
            await Store.audit(conn, row, action or method.removesuffix("Campaign").lower(), p.name,
                              self.clock.now(), request.note,
                              {k: jsonable(before[k]) for k in changed},
                              {k: jsonable(row[k]) for k in changed})
            prog = (await self.store.progress(conn, [request.id]))[request.id]
            result = self.store.to_proto(row, prog, await self.store.history(conn, request.id))
            await self.store.remember(conn, p.workspace, method, request.request_id, result,
                                      self.clock.now())
        log.info("campaign %s", method, extra={"campaign_id": request.id, "actor": p.name,
                                               "status": row["status"]})
        if before["status"] != row["status"]:
            await self.announce(row, before["status"], p.name)
        return result

    async def announce(self, row: Any, previous: str, actor: str) -> None:
        """events.campaign.status_changed for operator-made transitions (the scheduler
        announces its own)."""
        if self.js is None:
            return
        event_id = str(uuid.uuid4())
        await bus.publish(self.js, "events.campaign.status_changed", e.CampaignEvent(
            event_id=event_id, kind=e.CAMPAIGN_EVENT_KIND_STATUS_CHANGED, campaign_id=row["id"],
            workspace_id=row["workspace_id"], status=row["status"], previous_status=previous,
            reason=row["status_reason"], total_messages=row["recipients_count"],
            occurred_at=to_ts(self.clock.now()), actor=actor), event_id)

    async def SubmitCampaign(self, request: pb.CampaignActionRequest, context: Any) -> pb.Campaign:
        async def change(conn: AsyncConnection, row: Any, p: auth.Principal) -> None:
            if row["status"] != lifecycle.DRAFT:  # PENDING -> NEW exists only for re-moderation
                raise lifecycle.illegal(row["id"], row["status"], lifecycle.NEW)
            await Store.set_status(conn, row, lifecycle.NEW, "submitted for moderation", p.name,
                                   self.clock.now())
        return await self._act(request, "SubmitCampaign", "operator", change, "submitted")

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
        return await self._act(request, "ApproveCampaign", "moderator", change, "approved")

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
        return await self._act(request, "RejectCampaign", "moderator", change, "rejected")

    async def StartCampaign(self, request: pb.CampaignActionRequest, context: Any) -> pb.Campaign:
        async def change(conn: AsyncConnection, row: Any, p: auth.Principal) -> None:
            if row["status"] == lifecycle.NEW and row["moderation"] != pb.MODERATION_STATE_APPROVED:
                raise precondition(f"campaigns/{row['id']}", "MODERATION",
                                   f"campaign {row['id']} awaits moderation; approve it first")
            await Store.set_status(conn, row, lifecycle.PENDING, "started", p.name, self.clock.now())
        return await self._act(request, "StartCampaign", "operator", change, "started")

    async def PauseCampaign(self, request: pb.CampaignActionRequest, context: Any) -> pb.Campaign:
        async def change(conn: AsyncConnection, row: Any, p: auth.Principal) -> None:
            await Store.set_status(conn, row, lifecycle.PAUSED, request.note or "paused by operator",
                                   p.name, self.clock.now(), paused_by="operator")
        return await self._act(request, "PauseCampaign", "operator", change, "paused")

    async def ResumeCampaign(self, request: pb.CampaignActionRequest, context: Any) -> pb.Campaign:
        async def change(conn: AsyncConnection, row: Any, p: auth.Principal) -> None:
            if row["status"] != lifecycle.PAUSED:
                raise lifecycle.illegal(row["id"], row["status"], lifecycle.SENDING)
            now = self.clock.now()
            # Consecutive failures count afresh after an operator resumes.
            await Store.set_status(conn, row, lifecycle.SENDING, request.note or "resumed", p.name, now,
                                   paused_by="", failures_reset_at=now)
        return await self._act(request, "ResumeCampaign", "operator", change, "resumed")

    async def CancelCampaign(self, request: pb.CampaignActionRequest, context: Any) -> pb.Campaign:
        async def change(conn: AsyncConnection, row: Any, p: auth.Principal) -> None:
            now = self.clock.now()
            await Store.set_status(conn, row, lifecycle.CANCELLED, request.note or "cancelled",
                                   p.name, now, completed_at=now)
        result = await self._act(request, "CancelCampaign", "operator", change, "cancelled")
        if self.on_cancel is not None:
            await self.on_cancel(request.id)
        return result

    async def UpdateCampaign(self, request: pb.UpdateCampaignRequest, context: Any) -> pb.Campaign:
        p = auth.current()
        p.require("operator")
        paths = set(request.update_mask.paths)
        if not request.campaign.id:
            raise invalid({"campaign.id": "required"})
        if not paths:
            raise invalid({"update_mask": f"name the fields to change: {sorted(EDITABLE_FIELDS)}"})
        unknown = paths - EDITABLE_FIELDS
        if unknown:
            raise invalid({"update_mask": f"not editable: {sorted(unknown)}; editable: {sorted(EDITABLE_FIELDS)}"})
        if (prev := await self.store.replay(p.workspace, "UpdateCampaign", request.request_id,
                                            pb.Campaign)) is not None:
            return prev
        now = self.clock.now()
        async with self.store.engine.begin() as conn:
            row = await self._locked(conn, request.campaign.id, p)
            if row["status"] not in lifecycle.EDITABLE:
                raise precondition(f"campaigns/{row['id']}", "STATE",
                                   f"campaign {row['id']} is {row['status']}; only "
                                   f"{', '.join(sorted(lifecycle.EDITABLE))} campaigns can be edited")
            merged = self.store.to_proto(row)
            for path in paths:
                merged.ClearField(path)
                if path in ("start_at", "end_at", "window", "content"):
                    if request.campaign.HasField(path):
                        getattr(merged, path).CopyFrom(getattr(request.campaign, path))
                elif path == "category_ids":
                    merged.category_ids.extend(request.campaign.category_ids)
                elif path == "variants":
                    merged.variants.extend(request.campaign.variants)
                else:
                    setattr(merged, path, getattr(request.campaign, path))
            has_audience = bool(row["recipients_count"] or merged.category_ids)
            bad = validate_campaign(merged, has_audience)
            if bad:
                raise invalid(bad)
            values = column_values(merged, paths)
            changed = {k: v for k, v in values.items() if jsonable(row[k]) != jsonable(v)}
            extra: dict[str, Any] = {}
            remoderate = bool(paths & MODERATED_FIELDS) and changed and (
                row["moderation"] != pb.MODERATION_STATE_PENDING or row["status"] == lifecycle.PENDING)
            if remoderate:
                extra["moderation"] = pb.MODERATION_STATE_PENDING
                if row["status"] == lifecycle.PENDING:
                    await Store.set_status(conn, row, lifecycle.NEW, "edited: back to moderation", p.name, now)
            await conn.execute(update(campaigns).where(campaigns.c.id == row["id"]).values(
                updated_at=now, **changed, **extra))
            await Store.audit(conn, row, "edited", p.name, now,
                              "content changed after approval: moderation required" if remoderate else "",
                              {k: jsonable(row[k]) for k in changed},
                              {k: jsonable(v) for k, v in changed.items()})
            row = await self.store.get_row(conn, row["id"], p.workspace)
            prog = (await self.store.progress(conn, [row["id"]]))[row["id"]]
            result = self.store.to_proto(row, prog, await self.store.history(conn, row["id"]))
            await self.store.remember(conn, p.workspace, "UpdateCampaign", request.request_id, result, now)
        return result

    async def ArchiveCampaign(self, request: pb.CampaignActionRequest, context: Any) -> pb.Campaign:
        async def change(conn: AsyncConnection, row: Any, p: auth.Principal) -> None:
            if row["archived"] or row["status"] not in lifecycle.ARCHIVABLE:
                raise precondition(f"campaigns/{row['id']}", "STATE",
                                   f"campaign {row['id']} is {row['status']}"
                                   f"{' and already archived' if row['archived'] else ''}; only "
                                   f"{', '.join(sorted(lifecycle.ARCHIVABLE))} campaigns can be archived")
            await conn.execute(update(campaigns).where(campaigns.c.id == row["id"]).values(
                archived=True, updated_at=self.clock.now()))
        return await self._act(request, "ArchiveCampaign", "operator", change, "archived")

    async def RestoreCampaign(self, request: pb.CampaignActionRequest, context: Any) -> pb.Campaign:
        async def change(conn: AsyncConnection, row: Any, p: auth.Principal) -> None:
            if not row["archived"]:
                raise precondition(f"campaigns/{row['id']}", "STATE",
                                   f"campaign {row['id']} is not archived")
            await conn.execute(update(campaigns).where(campaigns.c.id == row["id"]).values(
                archived=False, updated_at=self.clock.now()))
        return await self._act(request, "RestoreCampaign", "operator", change, "restored")

    async def DeleteCampaign(self, request: pb.CampaignActionRequest, context: Any) -> pb.DeleteCampaignResponse:
        p, prev = await self._begin("DeleteCampaign", request.request_id, pb.DeleteCampaignResponse,
                                    "id", request.id, "operator")
        if prev is not None:
            return prev
        now = self.clock.now()
        async with self.store.engine.begin() as conn:
            row = await self._locked(conn, request.id, p)
            if row["status"] not in lifecycle.DELETABLE:
                raise precondition(f"campaigns/{row['id']}", "STATE",
                                   f"campaign {row['id']} is {row['status']}; only "
                                   f"{', '.join(sorted(lifecycle.DELETABLE))} campaigns can be deleted "
                                   "(cancel it first)")
            for table in (messages, campaign_targets, state_history):
                await conn.execute(delete(table).where(table.c.campaign_id == row["id"]))
            await conn.execute(delete(campaigns).where(campaigns.c.id == row["id"]))
            await Store.audit(conn, row, "deleted", p.name, now, request.note,
                              {"status": jsonable(row["status"])}, {})
            result = pb.DeleteCampaignResponse(id=row["id"])
            await self.store.remember(conn, p.workspace, "DeleteCampaign", request.request_id, result, now)
        log.info("campaign deleted", extra={"campaign_id": request.id, "actor": p.name})
        return result

    async def TriggerCampaign(self, request: pb.TriggerCampaignRequest, context: Any) -> pb.Message:
        p = auth.current()
        p.require("operator", "service")
        bad = {}
        if not request.campaign_id:
            bad["campaign_id"] = "required"
        r = request.recipient
        if not (r.contact_id or r.phone or r.email):
            bad["recipient"] = "needs a contact_id, a phone or an email"
        if bad:
            raise invalid(bad)
        if (prev := await self.store.replay(p.workspace, "TriggerCampaign", request.request_id,
                                            pb.Message)) is not None:
            return prev
        if self.recipients is None or self.js is None:
            raise precondition("campaigns", "CONFIG", "triggering needs the recipients service and NATS")
        async with self.store.engine.connect() as conn:
            row = await self.store.get_row(conn, request.campaign_id, p.workspace)
        if row is None:
            raise not_found("campaign", request.campaign_id)
        if row["mode"] != pb.CAMPAIGN_MODE_TRIGGER:
            raise precondition(f"campaigns/{row['id']}", "MODE", f"campaign {row['id']} is not a TRIGGER campaign")
        if row["status"] not in (lifecycle.SENDING, lifecycle.PAUSED):
            raise precondition(f"campaigns/{row['id']}", "STATE",
                               f"campaign {row['id']} is {row['status']}; triggers are accepted while "
                               "SENDING (or PAUSED, sent on resume)")
        req = rpb.ResolveAudienceRequest(channel=row["channel"], inline=[r])
        members = [m async for m in self.recipients.ResolveAudience(
            req, metadata=auth.call_metadata(workspace=p.workspace), timeout=30)]
        if not members:
            raise invalid({"recipient": "duplicate or unknown recipient"})
        member = members[0]
        key = request.request_id or str(uuid.uuid4())
        mid = str(uuid.uuid5(TRIGGER_NS, f"{row['id']}:{key}"))
        now = self.clock.now()
        rec = member.recipient
        address = rec.phone if row["channel"] == c.CHANNEL_SMS else rec.email
        status, kind = c.MESSAGE_STATUS_QUEUED, e.MESSAGE_EVENT_KIND_QUEUED
        if not member.accepted:
            status, kind = ((c.MESSAGE_STATUS_OPTED_OUT, e.MESSAGE_EVENT_KIND_OPTED_OUT)
                            if member.rejection == c.FAILURE_CATEGORY_UNSUBSCRIBED
                            else (c.MESSAGE_STATUS_FAILED, e.MESSAGE_EVENT_KIND_FAILED))
        values = dict(
            id=mid, campaign_id=row["id"], workspace_id=row["workspace_id"], contact_id=rec.contact_id,
            contact_name=" ".join(x for x in (rec.first_name, rec.last_name) if x), address=address or "",
            channel=row["channel"], status=status, status_rank=states.RANK[status],
            failure_category=0 if member.accepted else member.rejection,
            error_description="" if member.accepted else member.rejection_reason,
            content_preview=(row["content_text"] if row["channel"] == c.CHANNEL_SMS
                             else row["content_subject"])[:100],
            fields=dict(rec.fields), created_at=now, updated_at=now)
        async with self.store.engine.begin() as conn:
            await conn.execute(insert(messages).values(**values))
            await conn.execute(update(campaigns).where(campaigns.c.id == row["id"]).values(
                recipients_count=campaigns.c.recipients_count + 1))
            saved = (await conn.execute(select(messages).where(messages.c.id == mid))).mappings().one()
            result = message_proto(saved, p)
            await self.store.remember(conn, p.workspace, "TriggerCampaign", request.request_id, result, now)
        base = dict(message_id=mid, campaign_id=row["id"], workspace_id=row["workspace_id"],
                    channel=row["channel"], occurred_at=to_ts(now), to=address or "")
        evs = [e.MessageEvent(event_id=f"{mid}:queued", kind=e.MESSAGE_EVENT_KIND_QUEUED,
                              status=c.MESSAGE_STATUS_QUEUED, **base)]
        if not member.accepted:
            evs.append(e.MessageEvent(event_id=f"{mid}:{states.kind_name(kind)}", kind=kind, status=status,
                                      failure_category=member.rejection,
                                      error_description=member.rejection_reason, **base))
        await bus.publish_many(self.js, [(states.message_subject(ev.kind), ev, ev.event_id) for ev in evs])
        if self.on_trigger is not None:
            self.on_trigger()
        return result

    async def RetryMessages(self, request: pb.RetryMessagesRequest, context: Any) -> pb.RetryMessagesResponse:
        p, prev = await self._begin("RetryMessages", request.request_id, pb.RetryMessagesResponse,
                                    "campaign_id", request.campaign_id, "operator")
        if prev is not None:
            return prev
        now = self.clock.now()
        async with self.store.engine.begin() as conn:
            row = await self._locked(conn, request.campaign_id, p)
            if row["status"] not in (lifecycle.SENDING, lifecycle.PAUSED, lifecycle.DONE):
                raise precondition(f"campaigns/{row['id']}", "STATE",
                                   f"campaign {row['id']} is {row['status']}; messages can be retried "
                                   "while SENDING, PAUSED or DONE")
            busy = (await conn.execute(select(campaigns.c.id).where(
                campaigns.c.workspace_id == p.workspace, campaigns.c.channel == row["channel"],
                campaigns.c.status == lifecycle.SENDING, campaigns.c.id != row["id"]).limit(1))).first()
            if busy is not None:
                raise precondition(f"campaigns/{row['id']}", "BUSY",
                                   f"campaign {busy[0]} of the same channel is sending; retry when it ends")
            conds = [messages.c.campaign_id == row["id"]]
            if request.message_ids:
                conds.append(messages.c.id.in_(list(request.message_ids)))
            conds.extend(message_filter(request.filter))
            chosen = (await conn.execute(select(messages.c.id, messages.c.status, messages.c.failure_category,
                                                messages.c.attempt, messages.c.address).where(*conds))).all()
            retry = [r for r in chosen if r.status == c.MESSAGE_STATUS_FAILED
                     and r.failure_category != c.FAILURE_CATEGORY_UNSUBSCRIBED]
            for r in retry:
                await conn.execute(update(messages).where(messages.c.id == r.id).values(
                    attempt=r.attempt + 1, status=c.MESSAGE_STATUS_QUEUED, status_rank=0,
                    dispatched_at=None, sent_at=None, delivered_at=None, carrier_result="",
                    error_code="", error_description="", failure_category=0,
                    provider_message_id="", updated_at=now))
            if retry and row["status"] == lifecycle.DONE:
                await Store.set_status(conn, row, lifecycle.SENDING, f"retrying {len(retry)} failed messages",
                                       p.name, now, completed_at=None)
            await Store.audit(conn, row, "retried", p.name, now, f"{len(retry)} messages",
                              {}, {"messages": jsonable(len(retry))})
            after = await self.store.get_row(conn, row["id"], p.workspace)
            prog = (await self.store.progress(conn, [row["id"]]))[row["id"]]
            result = pb.RetryMessagesResponse(retried=len(retry), skipped=len(chosen) - len(retry),
                                              campaign=self.store.to_proto(after, prog))
            await self.store.remember(conn, p.workspace, "RetryMessages", request.request_id, result, now)
        if self.js is not None and retry:
            evs = []
            for r in retry:
                ev = e.MessageEvent(
                    event_id=f"{r.id}:queued:{r.attempt + 1}", kind=e.MESSAGE_EVENT_KIND_QUEUED,
                    status=c.MESSAGE_STATUS_QUEUED, message_id=r.id, campaign_id=row["id"],
                    workspace_id=row["workspace_id"], channel=row["channel"], attempt=r.attempt + 1,
                    occurred_at=to_ts(now), to=r.address)
                evs.append((states.message_subject(ev.kind), ev, ev.event_id))
            await bus.publish_many(self.js, evs)
        if row["status"] != after["status"]:
            await self.announce(after, row["status"], p.name)
        if self.on_trigger is not None:
            self.on_trigger()
        return result

    async def PromoteVariant(self, request: pb.PromoteVariantRequest, context: Any) -> pb.Campaign:
        if not request.variant:
            raise invalid({"variant": "required"})
        p, prev = await self._begin("PromoteVariant", request.request_id, pb.Campaign,
                                    "campaign_id", request.campaign_id, "operator")
        if prev is not None:
            return prev
        now = self.clock.now()
        async with self.store.engine.begin() as conn:
            row = await self._locked(conn, request.campaign_id, p)
            names = [v["name"] for v in row["variants"] or []]
            if request.variant not in names:
                raise invalid({"variant": f"not a variant of this campaign ({', '.join(names) or 'none'})"})
            if row["winner"]:
                raise precondition(f"campaigns/{row['id']}", "WINNER", f"variant {row['winner']} already won")
            if row["status"] not in (lifecycle.SENDING, lifecycle.PAUSED):
                raise precondition(f"campaigns/{row['id']}", "STATE",
                                   f"campaign {row['id']} is {row['status']}; promote while SENDING or PAUSED")
            label = f"{request.variant}:rollout"
            held = [(r.id, r.address) for r in await conn.execute(select(messages.c.id, messages.c.address).where(
                messages.c.campaign_id == row["id"], messages.c.held.is_(True)))]
            await conn.execute(update(messages).where(
                messages.c.campaign_id == row["id"], messages.c.held.is_(True)).values(
                held=False, variant=label, updated_at=now))
            await conn.execute(update(campaigns).where(campaigns.c.id == row["id"]).values(
                winner=request.variant, updated_at=now))
            await Store.audit(conn, row, "promoted", p.name, now, f"variant {request.variant} to {len(held)} held",
                              {"winner": jsonable("")}, {"winner": jsonable(request.variant)})
            after = await self.store.get_row(conn, row["id"], p.workspace)
            prog = (await self.store.progress(conn, [row["id"]]))[row["id"]]
            result = self.store.to_proto(after, prog)
            await self.store.remember(conn, p.workspace, "PromoteVariant", request.request_id, result, now)
        if self.js is not None and held:
            evs = []
            for mid, address in held:
                ev = e.MessageEvent(event_id=f"{mid}:queued", kind=e.MESSAGE_EVENT_KIND_QUEUED,
                                    status=c.MESSAGE_STATUS_QUEUED, message_id=mid, campaign_id=row["id"],
                                    workspace_id=row["workspace_id"], channel=row["channel"], variant=label,
                                    occurred_at=to_ts(now), to=address)
                evs.append((states.message_subject(ev.kind), ev, ev.event_id))
            await bus.publish_many(self.js, evs)
        if self.on_trigger is not None:
            self.on_trigger()
        return result

    # --- exports, errors, replies, clicks -------------------------------------------------
    async def _campaign_in_scope(self, conn: AsyncConnection, campaign_id: str, p: auth.Principal) -> Any:
        if not campaign_id:
            raise invalid({"campaign_id": "required"})
        row = await self.store.get_row(conn, campaign_id, None if p.master else p.workspace)
        if row is None:
            raise not_found("campaign", campaign_id)
        return row

    async def CreateExport(self, request: pb.CreateExportRequest, context: Any) -> pb.Export:
        p = auth.current()
        if (prev := await self.store.replay(p.workspace, "CreateExport", request.request_id,
                                            pb.Export)) is not None:
            return prev
        message_filter(request.filter)  # reject a bad filter now, not in the background
        if request.format not in (pb.EXPORT_FORMAT_UNSPECIFIED, pb.EXPORT_FORMAT_CSV, pb.EXPORT_FORMAT_TXT):
            raise invalid({"format": "CSV or TXT"})
        now = self.clock.now()
        async with self.store.engine.begin() as conn:
            row = await self._campaign_in_scope(conn, request.campaign_id, p)
            values = dict(id=new_id(), campaign_id=row["id"], workspace_id=row["workspace_id"],
                          format=request.format or pb.EXPORT_FORMAT_CSV, filter=request.filter,
                          status=pb.EXPORT_STATUS_QUEUED, author=p.name, pii=p.pii, created_at=now)
            await conn.execute(insert(exports).values(**values))
            saved = (await conn.execute(select(exports).where(exports.c.id == values["id"]))).mappings().one()
            result = export_proto(saved, now)
            await self.store.remember(conn, p.workspace, "CreateExport", request.request_id, result, now)
        if self.on_trigger is not None:
            self.on_trigger()  # the scheduler builds exports on its next tick
        return result

    async def _export_row(self, export_id: str, with_content: bool = False) -> Any:
        p = auth.current()
        if not export_id:
            raise invalid({"id": "required"})
        cols = [exports] if with_content else [col for col in exports.c if col.name != "content"] + [
            func.length(exports.c.content).label("content_len")]
        q = select(*cols).where(exports.c.id == export_id)
        if not p.master:
            q = q.where(exports.c.workspace_id == p.workspace)
        async with self.store.engine.connect() as conn:
            row = (await conn.execute(q)).mappings().first()
        if row is None:
            raise not_found("export", export_id)
        return row

    async def GetExport(self, request: pb.GetExportRequest, context: Any) -> pb.Export:
        return export_proto(await self._export_row(request.id), self.clock.now())

    async def ListExports(self, request: pb.ListExportsRequest, context: Any) -> pb.ListExportsResponse:
        p = auth.current()
        size, offset = page_size(request.page_size), decode_token(request.page_token)
        async with self.store.engine.connect() as conn:
            await self._campaign_in_scope(conn, request.campaign_id, p)
            cols = [col for col in exports.c if col.name != "content"] + [
                func.length(exports.c.content).label("content_len")]
            rows = (await conn.execute(select(*cols).where(exports.c.campaign_id == request.campaign_id)
                                       .order_by(exports.c.created_at.desc(), exports.c.id)
                                       .limit(size + 1).offset(offset))).mappings().all()
        now = self.clock.now()
        resp = pb.ListExportsResponse(exports=[export_proto(r, now) for r in rows[:size]])
        if len(rows) > size:
            resp.next_page_token = encode_token(offset + size)
        return resp

    async def DownloadExport(self, request: pb.GetExportRequest, context: Any) -> Any:
        row = await self._export_row(request.id, with_content=True)
        ex = export_proto(row, self.clock.now())
        if ex.status == pb.EXPORT_STATUS_EXPIRED:
            raise precondition(f"exports/{ex.id}", "EXPIRED", f"export {ex.id} has expired; create a new one")
        if ex.status != pb.EXPORT_STATUS_DONE or row["content"] is None:
            raise precondition(f"exports/{ex.id}", "NOT_READY",
                               f"export {ex.id} is {pb.ExportStatus.Name(ex.status).removeprefix('EXPORT_STATUS_')}")
        data = bytes(row["content"])
        for i in range(0, len(data), 64 * 1024):
            yield pb.ExportChunk(data=data[i:i + 64 * 1024])

    async def ListJobErrors(self, request: pb.ListJobErrorsRequest, context: Any) -> pb.ListJobErrorsResponse:
        p = auth.current()
        size, offset = page_size(request.page_size), decode_token(request.page_token)
        async with self.store.engine.connect() as conn:
            await self._campaign_in_scope(conn, request.campaign_id, p)
            cond = job_errors.c.campaign_id == request.campaign_id
            total = (await conn.execute(select(func.count()).select_from(job_errors).where(cond))).scalar_one()
            rows = (await conn.execute(select(job_errors).where(cond).order_by(job_errors.c.id.desc())
                                       .limit(size).offset(offset))).mappings().all()
        resp = pb.ListJobErrorsResponse(total_size=total, errors=[pb.JobError(
            id=r["id"], campaign_id=r["campaign_id"], stage=r["stage"], message=r["message"],
            at=to_ts(aware(r["at"]))) for r in rows])
        if offset + len(rows) < total:
            resp.next_page_token = encode_token(offset + len(rows))
        return resp

    async def ListReplies(self, request: pb.ListRepliesRequest, context: Any) -> pb.ListRepliesResponse:
        p = auth.current()
        size, offset = page_size(request.page_size), decode_token(request.page_token)
        async with self.store.engine.connect() as conn:
            await self._campaign_in_scope(conn, request.campaign_id, p)
            cond = replies.c.campaign_id == request.campaign_id
            total = (await conn.execute(select(func.count()).select_from(replies).where(cond))).scalar_one()
            rows = (await conn.execute(
                select(replies, messages.c.contact_id, messages.c.contact_name)
                .join(messages, messages.c.id == replies.c.message_id).where(cond)
                .order_by(replies.c.at.desc(), replies.c.event_id).limit(size).offset(offset))).mappings().all()
        resp = pb.ListRepliesResponse(total_size=total, replies=[pb.Reply(
            message_id=r["message_id"], contact_id=r["contact_id"], contact_name=r["contact_name"],
            text=r["text"], at=to_ts(aware(r["at"])), **{"from": auth.mask_phone(r["from_address"], p)})
            for r in rows])
        if offset + len(rows) < total:
            resp.next_page_token = encode_token(offset + len(rows))
        return resp

    async def ListClicks(self, request: pb.ListClicksRequest, context: Any) -> pb.ListClicksResponse:
        p = auth.current()
        size, offset = page_size(request.page_size), decode_token(request.page_token)
        async with self.store.engine.connect() as conn:
            await self._campaign_in_scope(conn, request.campaign_id, p)
            cond = clicks.c.campaign_id == request.campaign_id
            total, unique = (await conn.execute(select(func.count(), func.count(clicks.c.message_id.distinct()))
                                                .where(cond))).one()
            rows = (await conn.execute(
                select(clicks, messages.c.contact_id, messages.c.contact_name, messages.c.address,
                       messages.c.channel)
                .join(messages, messages.c.id == clicks.c.message_id).where(cond)
                .order_by(clicks.c.at, clicks.c.event_id).limit(size).offset(offset))).mappings().all()
        resp = pb.ListClicksResponse(total_size=total, unique_contacts=unique, clicks=[pb.Click(
            message_id=r["message_id"], contact_id=r["contact_id"], contact_name=r["contact_name"],
            address=auth.mask_phone(r["address"], p) if r["channel"] == c.CHANNEL_SMS else r["address"],
            link_index=r["link_index"], url=r["url"], at=to_ts(aware(r["at"]))) for r in rows])
        if offset + len(rows) < total:
            resp.next_page_token = encode_token(offset + len(rows))
        return resp

    # --- ledger ------------------------------------------------------------------------------
    async def ListMessages(self, request: pb.ListMessagesRequest, context: Any) -> pb.ListMessagesResponse:
        p = auth.current()
        if not request.campaign_id:
            raise invalid({"campaign_id": "required"})
        size, offset = page_size(request.page_size), decode_token(request.page_token)
        conds = [messages.c.campaign_id == request.campaign_id, *message_filter(request.filter)]
        order = request.order_by.strip() or "created"
        parts = order.split()
        col = {"created": messages.c.created_at, "created_at": messages.c.created_at,
               "sent": messages.c.sent_at, "sent_at": messages.c.sent_at}.get(parts[0])
        if col is None or len(parts) > 2 or (len(parts) == 2 and parts[1] not in ("asc", "desc")):
            raise invalid({"order_by": "use created|sent [asc|desc]"})
        desc = parts[-1] == "desc"
        ordering = [col.desc() if desc else col.asc(), messages.c.id.desc() if desc else messages.c.id]
        async with self.store.engine.connect() as conn:
            if await self.store.get_row(conn, request.campaign_id,
                                        None if p.master else p.workspace) is None:
                raise not_found("campaign", request.campaign_id)
            total = (await conn.execute(select(func.count()).select_from(messages).where(*conds))).scalar_one()
            rows = (await conn.execute(select(messages).where(*conds).order_by(*ordering)
                                       .limit(size).offset(offset))).mappings().all()
        resp = pb.ListMessagesResponse(total_size=total)
        for r in rows:
            resp.messages.append(message_proto(r, p))
        if offset + len(rows) < total:
            resp.next_page_token = encode_token(offset + len(rows))
        return resp


def export_proto(r: Any, now: datetime) -> pb.Export:
    out = exports_mod.to_proto({**r, "content": None}, now)
    size = r.get("content_len") if "content_len" in r else (len(r["content"]) if r["content"] else 0)
    out.size_bytes = size or 0
    return out


def message_proto(r: Any, p: auth.Principal) -> pb.Message:
    m = pb.Message(
        id=r["id"], campaign_id=r["campaign_id"], contact_id=r["contact_id"],
        contact_name=r["contact_name"], channel=r["channel"], status=r["status"],
        carrier_result=r["carrier_result"], error_code=r["error_code"],
        error_description=r["error_description"], failure_category=r["failure_category"],
        views=r["views"], clicks=r["clicks"], replies=r["replies"], variant=r["variant"],
        content_preview=r["content_preview"], provider_message_id=r["provider_message_id"],
        attempt=r["attempt"], fields=r["fields"] or {}, route=r["route"], held=r["held"],
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
