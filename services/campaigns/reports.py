"""Read-side RPCs of a campaign's detail page: messages, exports, job errors, replies, clicks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.campaigns import exports as exports_mod
from services.campaigns.exports import custom_fields, mask_export
from services.campaigns.filters import message_filter, page_size
from services.campaigns.schema import clicks, exports, job_errors, messages, replies
from services.campaigns.store import Store, decode_token, encode_token, new_id
from shared import auth, states
from shared.errors import invalid, not_found, precondition
from shared.idempotency import fingerprint
from shared.masking import HasPii, mask_phone, mask_text
from shared.timeutil import aware, to_ts

S = c.MessageStatus


class ReportsMixin:
    """Part of CampaignServicer (store, clock, on_trigger)."""

    store: Store
    clock: Any
    on_trigger: Any

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
        p.require("operator")
        fp = fingerprint("CreateExport", request)
        if (prev := await self.store.replay(p.workspace, "CreateExport", request.request_id,
                                            pb.Export, fingerprint=fp)) is not None:
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
            await self.store.remember(conn, p.workspace, "CreateExport", request.request_id, result, now,
                                      fingerprint=fp)
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
        # Stored unmasked; each downloader sees it by their own rights, whoever created it.
        data = mask_export(bytes(row["content"]), row["format"], auth.current())
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
            id=r["id"], campaign_id=r["campaign_id"], stage=r["stage"], message=mask_text(r["message"], p),
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
            text=mask_text(r["text"], p), at=to_ts(aware(r["at"])),
            **{"from": mask_phone(r["from_address"], p)})
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
            address=mask_phone(r["address"], p) if r["channel"] == c.CHANNEL_SMS else r["address"],
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


def stage_of(status: int, sent: bool) -> int:
    """How far Herald got (MessageStage): a message the carrier had (sent_at) stays SUBMITTED
    whatever the carrier said afterwards."""
    if status == S.MESSAGE_STATUS_QUEUED:
        return pb.MESSAGE_STAGE_NEW
    if status in (S.MESSAGE_STATUS_SENDING, S.MESSAGE_STATUS_DEFERRED):
        return pb.MESSAGE_STAGE_SENDING
    if status in states.SENT or sent:
        return pb.MESSAGE_STAGE_SUBMITTED
    return pb.MESSAGE_STAGE_NOT_SENT


def result_of(status: int) -> int:
    """What the carrier finally said (DeliveryResult); the same classes as result= filters."""
    if status in (S.MESSAGE_STATUS_DELIVERED, S.MESSAGE_STATUS_ASSUMED_DELIVERED):
        return pb.DELIVERY_RESULT_DELIVERED
    if status == S.MESSAGE_STATUS_FAILED:
        return pb.DELIVERY_RESULT_FAILED
    return pb.DELIVERY_RESULT_UNKNOWN


def message_proto(r: Any, p: HasPii) -> pb.Message:
    """A ledger row as the caller may see it."""
    return mask_message(raw_message(r), p)


def raw_message(r: Any) -> pb.Message:
    """A ledger row, unmasked (what idempotent replays store)."""
    m = pb.Message(
        id=r["id"], campaign_id=r["campaign_id"], contact_id=r["contact_id"],
        contact_name=r["contact_name"], channel=r["channel"], status=r["status"],
        carrier_result=r["carrier_result"], error_code=r["error_code"],
        error_description=r["error_description"], failure_category=r["failure_category"],
        views=r["views"], clicks=r["clicks"], replies=r["replies"], variant=r["variant"],
        content_preview=r["content_preview"], provider_message_id=r["provider_message_id"],
        attempt=r["attempt"], fields=custom_fields(r["fields"]), route=r["route"], held=r["held"],
        stage=stage_of(r["status"], r["sent_at"] is not None), result=result_of(r["status"]),
    )
    if r["channel"] == c.CHANNEL_SMS:
        m.phone = r["address"]
    else:
        m.email = r["address"]
    for fld in ("created_at", "sent_at", "delivered_at"):
        ts = to_ts(aware(r[fld]))
        if ts is not None:
            getattr(m, fld).CopyFrom(ts)
    return m


def mask_message(m: pb.Message, p: HasPii) -> pb.Message:
    """Phone numbers masked unless the caller has pii: the address, and any number inside
    the description, the custom fields or the content preview."""
    if p.pii:
        return m
    out = pb.Message()
    out.CopyFrom(m)
    out.phone = mask_phone(m.phone, p)
    out.error_description = mask_text(m.error_description, p)
    out.content_preview = mask_text(m.content_preview, p)
    for k, v in m.fields.items():
        out.fields[k] = mask_text(v, p)
    return out
