"""Lifecycle RPCs of CampaignService: submit, approve, reject, start, pause, resume, cancel,
archive, restore and delete. Each is one transaction: the compare-and-set of the status,
its history row, the audit entry and the idempotent answer commit together."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from herald.v1 import campaigns_pb2 as pb
from herald.v1 import events_pb2 as e
from sqlalchemy.ext.asyncio import AsyncConnection

from services.campaigns import lifecycle
from services.campaigns.repo import campaigns as campaigns_repo
from services.campaigns.store import Store, mask_campaign
from services.campaigns.validation import MAX_NOTE, jsonable
from shared import auth, bus, validate
from shared.errors import invalid, precondition
from shared.idempotency import fingerprint
from shared.timeutil import to_ts

log = logging.getLogger("herald.campaigns")


class TransitionsMixin:
    """Part of CampaignServicer (store, clock, js, on_cancel, _begin, _locked)."""

    store: Store
    clock: Any
    js: Any
    on_cancel: Any
    _begin: Any
    _locked: Any

    async def _act(self, request: pb.CampaignActionRequest, method: str, role: str,
                   change: Callable[[AsyncConnection, Any, auth.Principal], Awaitable[None]],
                   action: str = "") -> pb.Campaign:
        p, prev = await self._begin(method, request.request_id, pb.Campaign, "id", request.id, role,
                                    request=request)
        if prev is not None:
            return mask_campaign(prev, p)
        if why := validate.length(request.note, MAX_NOTE):
            raise invalid({"note": why})
        async with self.store.write() as conn:
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
                                      self.clock.now(), fingerprint(method, request))
        log.info("campaign %s", method, extra={"campaign_id": request.id, "actor": p.name,
                                               "status": row["status"]})
        if before["status"] != row["status"]:
            await self.announce(row, before["status"], p.name)
        return mask_campaign(result, p)

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
            await campaigns_repo.change(conn, row["id"], moderation=pb.MODERATION_STATE_APPROVED,
                                        moderation_note=request.note, updated_at=now)
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
            await campaigns_repo.change(conn, row["id"], moderation=pb.MODERATION_STATE_REJECTED,
                                        moderation_note=request.note)
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

    async def ArchiveCampaign(self, request: pb.CampaignActionRequest, context: Any) -> pb.Campaign:
        async def change(conn: AsyncConnection, row: Any, p: auth.Principal) -> None:
            if row["archived"] or row["status"] not in lifecycle.ARCHIVABLE:
                raise precondition(f"campaigns/{row['id']}", "STATE",
                                   f"campaign {row['id']} is {row['status']}"
                                   f"{' and already archived' if row['archived'] else ''}; only "
                                   f"{', '.join(sorted(lifecycle.ARCHIVABLE))} campaigns can be archived")
            await campaigns_repo.change(conn, row["id"], archived=True, updated_at=self.clock.now())
        return await self._act(request, "ArchiveCampaign", "operator", change, "archived")

    async def RestoreCampaign(self, request: pb.CampaignActionRequest, context: Any) -> pb.Campaign:
        async def change(conn: AsyncConnection, row: Any, p: auth.Principal) -> None:
            if not row["archived"]:
                raise precondition(f"campaigns/{row['id']}", "STATE",
                                   f"campaign {row['id']} is not archived")
            await campaigns_repo.change(conn, row["id"], archived=False, updated_at=self.clock.now())
        return await self._act(request, "RestoreCampaign", "operator", change, "restored")

    async def DeleteCampaign(self, request: pb.CampaignActionRequest, context: Any) -> pb.DeleteCampaignResponse:
        p, prev = await self._begin("DeleteCampaign", request.request_id, pb.DeleteCampaignResponse,
                                    "id", request.id, "operator", request=request)
        if prev is not None:
            return prev
        now = self.clock.now()
        async with self.store.write() as conn:
            row = await self._locked(conn, request.id, p)
            if row["status"] not in lifecycle.DELETABLE:
                raise precondition(f"campaigns/{row['id']}", "STATE",
                                   f"campaign {row['id']} is {row['status']}; only "
                                   f"{', '.join(sorted(lifecycle.DELETABLE))} campaigns can be deleted "
                                   "(cancel it first)")
            await campaigns_repo.remove(conn, row["id"])
            await Store.audit(conn, row, "deleted", p.name, now, request.note,
                              {"status": jsonable(row["status"])}, {})
            result = pb.DeleteCampaignResponse(id=row["id"])
            await self.store.remember(conn, p.workspace, "DeleteCampaign", request.request_id, result,
                                      now, fingerprint("DeleteCampaign", request))
        log.info("campaign deleted", extra={"campaign_id": request.id, "actor": p.name})
        return result

