"""RecipientService's suppression-list RPCs: AddSuppression, RemoveSuppression,
ListSuppressions (addresses through the channel registry, masked by the caller's rights)."""

from __future__ import annotations

import logging
from typing import Any

import grpc
from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2 as pb
from sqlalchemy.ext.asyncio import AsyncConnection

from services.recipients import boundary
from services.recipients.metrics import SUPPRESSIONS_ADDED, SUPPRESSIONS_REMOVED
from services.recipients.normalize import BadAddress, match_key, normalise
from services.recipients.store import Store
from shared import auth, channels
from shared.errors import denied, invalid, not_found
from shared.masking import mask_text
from shared.timeutil import aware, to_ts
from shared.validate import uuid_text

log = logging.getLogger("herald.recipients")

MAX_REASON = 500
KINDS = {"manual": pb.SUPPRESSION_KIND_MANUAL, "opted_out": pb.SUPPRESSION_KIND_OPTED_OUT,
         "bounced": pb.SUPPRESSION_KIND_BOUNCED, "complained": pb.SUPPRESSION_KIND_COMPLAINED}
# Entries the recipient asked for: only an admin may remove them, and only with a reason (the
# evidence of renewed consent), as messaging someone who opted out needs their consent again.
CONSENT_KINDS = ("opted_out", "complained")


def suppression_pb(rec: dict[str, Any], principal: auth.Principal) -> pb.Suppression:
    address = channels.spec(rec["channel"]).mask(rec["address"], principal.pii)
    return pb.Suppression(workspace_id=rec["workspace_id"], channel=rec["channel"],
                          address=address, reason=mask_text(rec["reason"], principal),
                          created_at=to_ts(aware(rec["created_at"])), id=rec["id"],
                          kind=KINDS.get(rec["kind"], pb.SUPPRESSION_KIND_UNSPECIFIED))


class SuppressionRpcs:
    store: Store

    # --- suppressions -------------------------------------------------------------
    async def AddSuppression(self, request: pb.AddSuppressionRequest,
                             context: grpc.aio.ServicerContext) -> pb.Suppression:
        p = boundary.principal()
        p.require(*boundary.WRITERS)
        fp = boundary.request_id("AddSuppression", request)
        boundary.channel(request.channel)
        boundary.require({"reason": boundary.text(request.reason, MAX_REASON)})
        try:
            address = normalise(request.channel, request.address)
        except BadAddress as exc:
            raise invalid({"address": mask_text(str(exc), p)}) from exc
        reason = request.reason.strip() or f"added by {p.name}"
        added = False

        async def work(conn: AsyncConnection) -> pb.Suppression:
            nonlocal added
            rec, added = await self.store.add_suppression(
                conn, p.workspace, request.channel, match_key(request.channel, address), reason,
                "api")
            return suppression_pb(rec, auth.Principal("store", p.workspace, pii=True))

        resp, _ = await self.store.mutate(p.workspace, "AddSuppression", request.request_id,
                                          pb.Suppression, work, fp)
        if added:
            SUPPRESSIONS_ADDED.labels("api").inc()
        resp.address = channels.spec(resp.channel).mask(resp.address, p.pii)
        resp.reason = mask_text(resp.reason, p)
        return resp

    async def RemoveSuppression(self, request: pb.RemoveSuppressionRequest,
                                context: grpc.aio.ServicerContext) -> pb.Suppression:
        """Takes an entry off the suppression list, by id or by channel and address. An
        opt-out or a complaint needs an admin and a reason; the removal is logged with both."""
        p = boundary.principal()
        p.require(*boundary.WRITERS)
        fp = boundary.request_id("RemoveSuppression", request)
        reason = request.reason.strip()
        boundary.require({"reason": boundary.text(request.reason, MAX_REASON)})
        suppression_id = request.id.lower()
        if suppression_id:
            both = bool(request.address or request.channel)
            boundary.require({"id": uuid_text(suppression_id) or (
                "give either id, or channel and address, not both" if both else None)})
            where: dict[str, Any] = {"suppression_id": suppression_id}
            named = suppression_id
        else:
            if not request.address.strip():
                raise invalid({"address": "required (or id)"})
            boundary.channel(request.channel)
            try:
                address = normalise(request.channel, request.address)
            except BadAddress as exc:
                raise invalid({"address": mask_text(str(exc), p)}) from exc
            where = {"channel": request.channel, "address": match_key(request.channel, address)}
            named = channels.spec(request.channel).mask(address, p.pii)
        removed: dict[str, Any] = {}

        async def work(conn: AsyncConnection) -> pb.Suppression:
            rec = await self.store.find_suppression(conn, p.workspace, **where)
            if rec is None:  # another workspace's entry looks exactly like a missing one
                raise not_found("suppression", named)
            if rec["kind"] in CONSENT_KINDS:
                if not p.has("admin"):
                    raise denied(f"{p.name} lacks role admin: an entry the recipient asked for "
                                 f"({rec['kind']}) is removed by an admin, with a reason")
                if not reason:
                    raise invalid({"reason": f"required to remove an entry the recipient asked "
                                             f"for ({rec['kind']}): the evidence of renewed "
                                             "consent"})
            await self.store.delete_suppression(conn, p.workspace, rec["channel"], rec["address"])
            removed.update(rec)
            return suppression_pb(rec, auth.Principal("store", p.workspace, pii=True))

        resp, replayed = await self.store.mutate(p.workspace, "RemoveSuppression",
                                                 request.request_id, pb.Suppression, work, fp)
        if not replayed:
            SUPPRESSIONS_REMOVED.labels(removed["kind"]).inc()
            # Who took the entry off and why: the record of a removal (addresses stay out of
            # the log; the id and kind name the entry).
            log.info("suppression removed", extra={
                "workspace": p.workspace, "suppression": resp.id, "kind": removed["kind"],
                "channel": c.Channel.Name(resp.channel), "by": p.name,
                "reason": mask_text(reason, None) or "(none)"})
        resp.address = channels.spec(resp.channel).mask(resp.address, p.pii)
        resp.reason = mask_text(resp.reason, p)
        return resp

    async def ListSuppressions(self, request: pb.ListSuppressionsRequest,
                               context: grpc.aio.ServicerContext) -> pb.ListSuppressionsResponse:
        p = boundary.principal()
        size = boundary.page_size(request.page_size)
        channel = boundary.channel_filter(request.filter)
        query = ("ListSuppressions", p.workspace, channel or 0)
        offset = boundary.page_offset(request.page_token, *query)
        recs, more = await self.store.list_suppressions(p.workspace, size, offset, channel)
        return pb.ListSuppressionsResponse(
            suppressions=[suppression_pb(r, p) for r in recs],
            next_page_token=boundary.next_token(more, offset, size, *query))
