"""CampaignService gRPC implementation."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import Message
from herald.v1 import campaigns_pb2 as pb
from herald.v1 import campaigns_pb2_grpc as pb_grpc
from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2 as rpb
from herald.v1 import recipients_pb2_grpc as rgrpc
from herald.v1 import stats_pb2_grpc as sgrpc
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncConnection

from services.campaigns import lifecycle, preview
from services.campaigns.exports import custom_fields
from services.campaigns.filters import (
    ORDERABLE,
    campaign_filter,
    message_filter,
    names_status,
    page_size,
    period_delta,
)
from services.campaigns.reconcile import Reconciler
from services.campaigns.repo import campaigns as campaigns_repo
from services.campaigns.repo import messages as messages_repo
from services.campaigns.reports import ReportsMixin
from services.campaigns.sending import SendingMixin
from services.campaigns.store import Store, mask_campaign, new_id
from services.campaigns.transitions import TransitionsMixin
from services.campaigns.validation import (
    EDITABLE_FIELDS,
    MODERATED_FIELDS,
    check_targets,
    column_values,
    content_issues,
    inline_field_names,
    jsonable,
    required_uuid,
    validate_campaign,
    validate_create,
)
from shared import auth, channels, pagetoken, validate
from shared.errors import invalid, not_found, precondition
from shared.idempotency import fingerprint
from shared.masking import mask_text
from shared.timeutil import Clock, aware, to_ts

log = logging.getLogger("herald.campaigns")

# Edits that change what is sent or to whom: checked again by the recipients service.
TARGETED_FIELDS = {"sender", "content", "category_ids", "variants", "mode"}


class CampaignServicer(TransitionsMixin, SendingMixin, ReportsMixin, pb_grpc.CampaignServiceServicer):
    def __init__(self, store: Store, clock: Clock | None = None,
                 on_cancel: Callable[[str], Awaitable[None]] | None = None,
                 recipients: rgrpc.RecipientServiceStub | None = None,
                 js: JetStreamContext | None = None,
                 on_trigger: Callable[[], None] | None = None,
                 stats: sgrpc.StatsServiceStub | None = None) -> None:
        self.store = store
        self.clock = clock or Clock()
        self.on_cancel = on_cancel
        self.recipients = recipients
        self.js = js
        self.on_trigger = on_trigger
        self.reconciler = Reconciler(store, stats, self.clock)

    # --- create / read -----------------------------------------------------------------
    async def CreateCampaign(self, request: pb.CreateCampaignRequest, context: Any) -> pb.Campaign:
        p = auth.current()
        p.require("operator")
        bad = {f: why for f, why in (("request_id", validate.request_id(request.request_id)),
                                     ("source_campaign_id", request.source_campaign_id and
                                      validate.uuid_text(request.source_campaign_id))) if why}
        if bad:
            raise invalid(bad)
        fp = fingerprint("CreateCampaign", request)
        if (prev := await self.store.replay(p.workspace, "CreateCampaign", request.request_id,
                                            pb.Campaign, fp)) is not None:
            return mask_campaign(prev, p)
        if request.source_campaign_id:
            request = await self.with_source_recipients(request, p)
        now = self.clock.now()
        validate_create(request, now)
        cp, cid = request.campaign, new_id()
        inline = list(request.recipients)
        bad, field_names = await check_targets(self.recipients, p, cp, inline)
        bad.update(content_issues(cp, field_names, inline))
        if bad:
            raise invalid(bad)
        status = lifecycle.DRAFT if request.draft else lifecycle.NEW
        values = dict(
            id=cid, workspace_id=p.workspace, channel=cp.channel, status=status, author=p.name,
            moderation=pb.MODERATION_STATE_PENDING, recipients_count=len(inline),
            created_at=now, updated_at=now, **column_values(cp, EDITABLE_FIELDS),
        )
        async with self.store.write() as conn:
            await campaigns_repo.add(conn, values)
            await self.store.save_targets(conn, cid, inline)
            await self.store.add_history(conn, cid, status, "created", p.name, now)
            row = await self.store.get_row(conn, cid, p.workspace)
            await Store.audit(conn, row, "created", p.name, now)
            result = self.store.to_proto(row, pb.Progress(), await self.store.history(conn, cid))
            await self.store.remember(conn, p.workspace, "CreateCampaign", request.request_id,
                                      result, now, fp)
        log.info("campaign created", extra={"campaign_id": cid, "workspace": p.workspace,
                                            "recipients": len(inline)})
        # The stats service learns the campaign's workspace from this first event.
        await self.announce(row, "", p.name)
        return mask_campaign(result, p)

    async def with_source_recipients(self, request: pb.CreateCampaignRequest,
                                     p: auth.Principal) -> pb.CreateCampaignRequest:
        """Add the recipients of another campaign (by default its failed ones) inline."""
        flt = request.source_filter or "result=failed"
        conds = message_filter(flt)
        async with self.store.read() as conn:
            src = await self.store.get_row(conn, request.source_campaign_id, p.workspace)
            if src is None:
                raise invalid({"source_campaign_id": f"campaign {request.source_campaign_id} not found"})
            rows = await messages_repo.matching(conn, src["id"], conds)
        out = pb.CreateCampaignRequest()
        out.CopyFrom(request)
        channel = request.campaign.channel or src["channel"]
        if channel != src["channel"]:
            raise invalid({"source_campaign_id": "the source campaign is on another channel"})
        for r in rows:
            # The ledger row keeps every template variable; names, external id and language
            # come back as such, the custom fields as fields.
            v = r["fields"] or {}
            first, _, last = r["contact_name"].partition(" ")
            rec = c.Recipient(contact_id=r["contact_id"], first_name=v.get("first_name", first),
                              last_name=v.get("last_name", last),
                              external_id=v.get("external_id", ""), language=v.get("language", ""),
                              fields=custom_fields(v))
            channels.spec(channel).set_address(rec, r["address"])
            if r["address"]:
                out.recipients.append(rec)
        return out

    async def GetCampaign(self, request: pb.GetCampaignRequest, context: Any) -> pb.Campaign:
        p = auth.current()
        if why := required_uuid(request.id):
            raise invalid({"id": why})
        cp = await self.store.load(request.id, None if p.master else p.workspace)
        if cp is None:
            raise not_found("campaign", request.id)
        cp.category_names.extend(await self.category_names(cp))
        return mask_campaign(cp, p)

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
                    rpb.ListCategoriesRequest(page_size=1000, page_token=token,
                                              view=rpb.CATEGORY_VIEW_BASIC),  # names, no counts
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
        bound = pagetoken.binding("ListCampaigns", p.workspace, request.filter, request.order_by,
                                  request.show_archived, request.archived_only,
                                  request.moderation_queue, request.show_all)
        size, offset = page_size(request.page_size), pagetoken.decode(request.page_token, bound)
        conds = campaign_filter(request.filter, p, self.clock.now())
        # NEW campaigns belong to the moderation queue; the main list shows them only when
        # asked for every status or for status=NEW by name (the Archive view shows all).
        conds += campaigns_repo.view_conditions(
            moderation_queue=request.moderation_queue,
            with_new=bool(request.show_all or request.archived_only
                          or names_status(request.filter, lifecycle.NEW)),
            archived_only=request.archived_only, show_archived=request.show_archived)
        order = request.order_by.strip() or "created desc"
        if len(order) > 100:
            raise invalid({"order_by": "at most 100 characters"})
        parts = order.split()
        col = ORDERABLE.get(parts[0])
        if col is None or len(parts) > 2 or (len(parts) == 2 and parts[1] not in ("asc", "desc")):
            raise invalid({"order_by": f"{order!r}: use one of {sorted(ORDERABLE)} [asc|desc]"})
        async with self.store.read() as conn:
            total, rows = await campaigns_repo.page(conn, conds, col, parts[-1] == "desc", size, offset)
            prog = await self.store.progress(conn, [r["id"] for r in rows])
        resp = pb.ListCampaignsResponse(total_size=total)
        resp.campaigns.extend(mask_campaign(self.store.to_proto(r, prog[r["id"]]), p) for r in rows)
        if offset + len(rows) < total:
            resp.next_page_token = pagetoken.encode(offset + len(rows), bound)
        return resp

    async def GetCampaignKpis(self, request: pb.GetCampaignKpisRequest, context: Any) -> pb.CampaignKpis:
        p = auth.current()
        since = None
        if request.period and request.period != "all":
            since = self.clock.now() - period_delta(request.period)
        async with self.store.read() as conn:
            counts = await campaigns_repo.count_by_status(conn, workspace=p.workspace, since=since)
            waiting = await campaigns_repo.awaiting_moderation(conn, p.workspace, since)
            delivered = await campaigns_repo.delivered(conn, p.workspace, since)
        return pb.CampaignKpis(
            total_campaigns=sum(counts.values()),
            active=sum(counts.get(s, 0) for s in lifecycle.ACTIVE),
            completed=counts.get(lifecycle.DONE, 0), errors=counts.get(lifecycle.FAILED, 0),
            messages_delivered=delivered, awaiting_moderation=waiting)

    async def ListAuditEvents(self, request: pb.ListAuditEventsRequest, context: Any) -> pb.ListAuditEventsResponse:
        p = auth.current()
        if why := required_uuid(request.campaign_id):
            raise invalid({"campaign_id": why})
        bound = pagetoken.binding("ListAuditEvents", p.workspace, request.campaign_id)
        size, offset = page_size(request.page_size), pagetoken.decode(request.page_token, bound)
        async with self.store.read() as conn:
            rows = await campaigns_repo.audit_page(conn, request.campaign_id,
                                                   None if p.master else p.workspace, size, offset)
        if not rows and offset == 0:
            raise not_found("campaign", request.campaign_id)
        resp = pb.ListAuditEventsResponse()
        for r in rows[:size]:
            resp.events.append(pb.AuditEvent(
                id=r["id"], campaign_id=r["campaign_id"], action=r["action"], actor=r["actor"],
                note=mask_text(r["note"], p), before=_masked(r["before"], p),
                after=_masked(r["after"], p), at=to_ts(aware(r["at"]))))
        if len(rows) > size:
            resp.next_page_token = pagetoken.encode(offset + size, bound)
        return resp

    # --- shared prologue of mutating RPCs -------------------------------------------------
    async def _begin(self, method: str, request_id: str, cls: type, field: str, value: str,
                     *roles: str, request: Message | None = None) -> tuple[auth.Principal, Any]:
        """Role check, required id, and the first answer when request_id is a retry of the
        same call (pass request= so a reuse on another call is refused)."""
        p = auth.current()
        p.require(*roles)
        bad = {field: why for field, why in ((field, required_uuid(value)),
                                               ("request_id", validate.request_id(request_id))) if why}
        if bad:
            raise invalid(bad)
        fp = fingerprint(method, request) if request is not None else ""
        return p, await self.store.replay(p.workspace, method, request_id, cls, fp)

    async def _locked(self, conn: AsyncConnection, campaign_id: str, p: auth.Principal) -> Any:
        row = await self.store.get_row(conn, campaign_id, p.workspace, for_update=True)
        if row is None:
            raise not_found("campaign", campaign_id)
        return row

    async def UpdateCampaign(self, request: pb.UpdateCampaignRequest, context: Any) -> pb.Campaign:
        p = auth.current()
        p.require("operator")
        paths = set(request.update_mask.paths)
        bad = {f: why for f, why in (("campaign.id", required_uuid(request.campaign.id)),
                                     ("request_id", validate.request_id(request.request_id))) if why}
        if bad:
            raise invalid(bad)
        if not paths:
            raise invalid({"update_mask": f"name the fields to change: {sorted(EDITABLE_FIELDS)}"})
        unknown = paths - EDITABLE_FIELDS
        if unknown:
            raise invalid({"update_mask": f"not editable: {sorted(unknown)}; editable: {sorted(EDITABLE_FIELDS)}"})
        fp = fingerprint("UpdateCampaign", request)
        if (prev := await self.store.replay(p.workspace, "UpdateCampaign", request.request_id,
                                            pb.Campaign, fp)) is not None:
            return mask_campaign(prev, p)
        now = self.clock.now()
        async with self.store.write() as conn:
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
            schedule_edited = bool(paths & {"start_at", "end_at", "mode"})
            bad = validate_campaign(merged, has_audience, now=now if schedule_edited else None)
            if bad:
                raise invalid(bad)
            if paths & TARGETED_FIELDS:
                bad, field_names = await check_targets(self.recipients, p, merged, [])
                stored = await self.store.load_targets(row["id"]) if row["recipients_count"] else []
                bad.update(content_issues(merged, [*field_names, *inline_field_names(stored)], stored))
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
            await campaigns_repo.change(conn, row["id"], updated_at=now, **changed, **extra)
            await Store.audit(conn, row, "edited", p.name, now,
                              "content changed after approval: moderation required" if remoderate else "",
                              {k: jsonable(row[k]) for k in changed},
                              {k: jsonable(v) for k, v in changed.items()})
            row = await self.store.get_row(conn, row["id"], p.workspace)
            prog = (await self.store.progress(conn, [row["id"]]))[row["id"]]
            result = self.store.to_proto(row, prog, await self.store.history(conn, row["id"]))
            await self.store.remember(conn, p.workspace, "UpdateCampaign", request.request_id,
                                      result, now, fp)
        return mask_campaign(result, p)

    async def PreviewContent(self, request: pb.PreviewContentRequest, context: Any) -> pb.PreviewContentResponse:
        return await preview.preview_content(self.store, self.recipients, auth.current(), request)

    async def ReconcileCampaign(self, request: pb.ReconcileCampaignRequest, context: Any) -> pb.ReconcileReport:
        return await self.reconciler.reconcile(request, context)


def _masked(values: dict | None, p: auth.Principal) -> dict[str, str]:
    """Audit before/after values may hold phone numbers (a description, a note)."""
    return {k: mask_text(v, p) for k, v in (values or {}).items()}
