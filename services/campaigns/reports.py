"""Read-side RPCs of a campaign's detail page: messages, exports, job errors, replies, clicks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from sqlalchemy.ext.asyncio import AsyncConnection

from services.campaigns import exports as exports_mod
from services.campaigns.exports import custom_fields, export_header, mask_chunk, mask_export
from services.campaigns.filters import enum_values, filter_terms, message_filter, page_size
from services.campaigns.repo import exports as exports_repo
from services.campaigns.repo import job_errors, replies_clicks
from services.campaigns.repo import messages as messages_repo
from services.campaigns.store import (
    Store,
    decode_page_token,
    decode_token,
    encode_key_token,
    encode_token,
    new_id,
)
from shared import auth, channels, pagetoken, states
from shared.errors import invalid, not_found, precondition
from shared.idempotency import fingerprint
from shared.masking import HasPii, mask_phone, mask_text
from shared.timeutil import aware, to_ts

S = c.MessageStatus
# Message.address (any channel's address) where the contract has it; phone/email otherwise.
HAS_ADDRESS = "address" in pb.Message.DESCRIPTOR.fields_by_name


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
        async with self.store.write() as conn:
            row = await self._campaign_in_scope(conn, request.campaign_id, p)
            saved = await exports_repo.add(conn, dict(
                id=new_id(), campaign_id=row["id"], workspace_id=row["workspace_id"],
                format=request.format or pb.EXPORT_FORMAT_CSV, filter=request.filter,
                status=pb.EXPORT_STATUS_QUEUED, author=p.name, pii=p.pii, created_at=now))
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
        async with self.store.read() as conn:
            row = await exports_repo.get(conn, export_id, None if p.master else p.workspace, with_content)
        if row is None:
            raise not_found("export", export_id)
        return row

    async def GetExport(self, request: pb.GetExportRequest, context: Any) -> pb.Export:
        return export_proto(await self._export_row(request.id), self.clock.now())

    async def ListExports(self, request: pb.ListExportsRequest, context: Any) -> pb.ListExportsResponse:
        p = auth.current()
        size, offset = page_size(request.page_size), decode_token(request.page_token)
        async with self.store.read() as conn:
            await self._campaign_in_scope(conn, request.campaign_id, p)
            rows = await exports_repo.page(conn, request.campaign_id, size, offset)
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
        head, last = None, 0
        if ex.status == pb.EXPORT_STATUS_DONE and row["content"] is None:
            async with self.store.read() as conn:
                head, last = await exports_repo.chunk(conn, ex.id, 0), await exports_repo.last_seq(conn, ex.id)
        if ex.status != pb.EXPORT_STATUS_DONE or (row["content"] is None and head is None):
            raise precondition(f"exports/{ex.id}", "NOT_READY",
                               f"export {ex.id} is {pb.ExportStatus.Name(ex.status).removeprefix('EXPORT_STATUS_')}")
        # Stored unmasked; each downloader sees it by their own rights, whoever created it.
        who, fmt = auth.current(), row["format"]
        if head is None:  # built before exports were chunked: one blob
            data = mask_export(bytes(row["content"]), fmt, who)
            for i in range(0, len(data), 64 * 1024):
                yield pb.ExportChunk(data=data[i:i + 64 * 1024])
            return
        # Chunk 0 is the header, each later one whole rows: read and mask one at a time.
        header, data = export_header(head, fmt), mask_export(head, fmt, who)
        for seq in range(1, (last or 0) + 2):
            for i in range(0, len(data), 64 * 1024):
                yield pb.ExportChunk(data=data[i:i + 64 * 1024])
            if seq > (last or 0):
                break
            async with self.store.read() as conn:
                raw = await exports_repo.chunk(conn, ex.id, seq)
            if raw is None:  # expired while being downloaded: an error, never a short file
                raise precondition(f"exports/{ex.id}", "EXPIRED", f"export {ex.id} has expired; create a new one")
            data = mask_chunk(raw, header, fmt, who)

    async def ListJobErrors(self, request: pb.ListJobErrorsRequest, context: Any) -> pb.ListJobErrorsResponse:
        p = auth.current()
        size, offset = page_size(request.page_size), decode_token(request.page_token)
        async with self.store.read() as conn:
            await self._campaign_in_scope(conn, request.campaign_id, p)
            total, rows = await job_errors.page(conn, request.campaign_id, size, offset)
        resp = pb.ListJobErrorsResponse(total_size=total, errors=[pb.JobError(
            id=r["id"], campaign_id=r["campaign_id"], stage=r["stage"], message=mask_text(r["message"], p),
            at=to_ts(aware(r["at"]))) for r in rows])
        if offset + len(rows) < total:
            resp.next_page_token = encode_token(offset + len(rows))
        return resp

    async def ListReplies(self, request: pb.ListRepliesRequest, context: Any) -> pb.ListRepliesResponse:
        p = auth.current()
        size, offset = page_size(request.page_size), decode_token(request.page_token)
        async with self.store.read() as conn:
            await self._campaign_in_scope(conn, request.campaign_id, p)
            total, rows = await replies_clicks.replies_page(conn, request.campaign_id, size, offset)
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
        async with self.store.read() as conn:
            await self._campaign_in_scope(conn, request.campaign_id, p)
            total, unique, rows = await replies_clicks.clicks_page(conn, request.campaign_id, size, offset)
        resp = pb.ListClicksResponse(total_size=total, unique_contacts=unique, clicks=[pb.Click(
            message_id=r["message_id"], contact_id=r["contact_id"], contact_name=r["contact_name"],
            address=channels.spec(r["channel"]).mask(r["address"], p.pii),
            link_index=r["link_index"], url=r["url"], at=to_ts(aware(r["at"]))) for r in rows])
        if offset + len(rows) < total:
            resp.next_page_token = encode_token(offset + len(rows))
        return resp

    # --- ledger ------------------------------------------------------------------------------
    async def ListMessages(self, request: pb.ListMessagesRequest, context: Any) -> pb.ListMessagesResponse:
        p = auth.current()
        if not request.campaign_id:
            raise invalid({"campaign_id": "required"})
        size = page_size(request.page_size)
        conds = message_filter(request.filter)
        order = request.order_by.strip() or "created"
        parts = order.split()
        if (parts[0] not in messages_repo.ORDERABLE or len(parts) > 2
                or (len(parts) == 2 and parts[1] not in ("asc", "desc"))):
            raise invalid({"order_by": "use created|sent [asc|desc]"})
        bound = pagetoken.binding("ListMessages", request.campaign_id, request.filter, order)
        offset, after = decode_page_token(request.page_token, bound)
        keyset = parts[0] in messages_repo.KEYSET
        async with self.store.read() as conn:
            if await self.store.get_row(conn, request.campaign_id,
                                        None if p.master else p.workspace) is None:
                raise not_found("campaign", request.campaign_id)
            total, rows = await messages_repo.page(
                conn, request.campaign_id, conds, parts[0], parts[-1] == "desc", size, offset,
                after if keyset else None, status_only(request.filter))
        resp = pb.ListMessagesResponse(total_size=total)
        for r in rows[:size]:
            resp.messages.append(message_proto(r, p))
        if len(rows) > size:
            last = rows[size - 1]
            resp.next_page_token = (
                encode_key_token(last[messages_repo.ORDERABLE[parts[0]].name], last["id"], bound)
                if keyset else pagetoken.encode(offset + size, bound))
        return resp


def status_only(expr: str) -> list[int] | None:
    """The statuses a filter made only of status= terms selects (every status for no filter;
    None for any other filter): its total can be read from the progress counters instead of
    counting the campaign's rows (an unfiltered page counted all of them on every call)."""
    terms = filter_terms(expr)
    if not terms:
        return sorted(c.MessageStatus.values())
    if any(key != "status" for key, _ in terms):
        return None
    picked = set(enum_values(c.MessageStatus, "MESSAGE_STATUS_", terms[0][1], "status"))
    for _, vals in terms[1:]:
        picked &= set(enum_values(c.MessageStatus, "MESSAGE_STATUS_", vals, "status"))
    return sorted(picked)


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
    kind = channels.spec(r["channel"]).address_kind if channels.known(r["channel"]) else ""
    if kind in ("phone", "email"):  # the typed fields of the two first channels
        setattr(m, kind, r["address"])
    if HAS_ADDRESS:
        m.address = r["address"]
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
    if HAS_ADDRESS and channels.known(m.channel):
        out.address = channels.spec(m.channel).mask(m.address, p.pii)
    out.error_description = mask_text(m.error_description, p)
    out.content_preview = mask_text(m.content_preview, p)
    for k, v in m.fields.items():
        out.fields[k] = mask_text(v, p)
    return out
