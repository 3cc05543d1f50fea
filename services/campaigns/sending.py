"""RPCs that put messages on their way outside the lifecycle: triggers, retries, A/B promotion."""

from __future__ import annotations

import uuid
from typing import Any

from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from herald.v1 import recipients_pb2 as rpb
from sqlalchemy import insert, select, update

from services.campaigns import lifecycle
from services.campaigns.filters import message_filter
from services.campaigns.reports import message_proto
from services.campaigns.schema import campaigns, messages
from services.campaigns.store import Store
from services.campaigns.validation import jsonable
from shared import auth, bus, states
from shared.errors import invalid, not_found, precondition
from shared.timeutil import to_ts

TRIGGER_NS = uuid.UUID("9d7e1c1a-3f0b-4a55-8b7e-2d7c5a1e0f42")


class SendingMixin:
    """Part of CampaignServicer (store, clock, js, recipients, _begin, _locked, announce)."""

    store: Store
    clock: Any
    js: Any
    recipients: Any
    on_trigger: Any
    _begin: Any
    _locked: Any
    announce: Any

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
