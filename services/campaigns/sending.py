"""RPCs that put messages on their way outside the lifecycle: triggers, retries, A/B promotion."""

from __future__ import annotations

import uuid
from typing import Any

from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from herald.v1 import recipients_pb2 as rpb
from sqlalchemy.ext.asyncio import AsyncConnection

from services.campaigns import lifecycle
from services.campaigns.filters import message_filter
from services.campaigns.repo import campaigns as campaigns_repo
from services.campaigns.repo import messages as messages_repo
from services.campaigns.reports import mask_message, raw_message
from services.campaigns.scheduler import content_of, preview, variables_of
from services.campaigns.scheduler.content import preview_field
from services.campaigns.store import Store
from services.campaigns.validation import jsonable
from shared import auth, bus, channels, states, templating, validate
from shared.errors import invalid, not_found, precondition
from shared.idempotency import fingerprint
from shared.masking import HasPii, mask_text
from shared.timeutil import to_ts

TRIGGER_NS = uuid.UUID("9d7e1c1a-3f0b-4a55-8b7e-2d7c5a1e0f42")
RECHECK_CHUNK = 5000  # addresses per ResolveAudience call when a retry checks them again


def _recipient(spec: channels.ChannelSpec, address: str) -> c.Recipient:
    r = c.Recipient()
    spec.set_address(r, address)
    return r


def mask_retry(resp: pb.RetryMessagesResponse, p: HasPii) -> pb.RetryMessagesResponse:
    """Stored unmasked; the exclusion reasons name addresses, masked unless pii."""
    if p.pii:
        return resp
    out = pb.RetryMessagesResponse()
    out.CopyFrom(resp)
    for x in out.excluded:
        x.reason = mask_text(x.reason, p)
    return out


def previews(row: Any, variant: str, held: list[Any]) -> dict[str, str]:
    """The held messages now get the winner's content: their previews follow it."""
    content = content_of(row, variant)
    source = content.get(preview_field(row["channel"]), "")
    if content.get("template_name") or not templating.is_template(source):
        if not held:
            return {}
        shown = preview(row["channel"], content, {})  # the same preview for everyone
        return {r.id: shown for r in held}
    out = {}
    for r in held:
        try:
            out[r.id] = preview(row["channel"], content, r.fields or {})
        except templating.TemplateError:
            out[r.id] = ""  # the gateway fails this message with the reason when it renders it
    return out


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
        if why := validate.request_id(request.request_id):
            bad["request_id"] = why
        r = request.recipient
        if not (r.contact_id or r.phone or r.email):
            bad["recipient"] = "needs a contact_id, a phone or an email"
        if bad:
            raise invalid(bad)
        fp = fingerprint("TriggerCampaign", request)
        if (prev := await self.store.replay(p.workspace, "TriggerCampaign", request.request_id,
                                            pb.Message, fingerprint=fp)) is not None:
            return mask_message(prev, p)  # stored unmasked: masked for whoever asks again
        if self.recipients is None or self.js is None:
            raise precondition("campaigns", "CONFIG", "triggering needs the recipients service and NATS")
        async with self.store.read() as conn:
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
        address = channels.spec(row["channel"]).address_of(rec)
        # The per-call fields win over the contact's custom fields of the same name.
        variables = variables_of(rec, r.fields)
        status, kind = c.MESSAGE_STATUS_QUEUED, e.MESSAGE_EVENT_KIND_QUEUED
        category, reason = (0, "") if member.accepted else (member.rejection, member.rejection_reason)
        if not member.accepted:
            status, kind = ((c.MESSAGE_STATUS_OPTED_OUT, e.MESSAGE_EVENT_KIND_OPTED_OUT)
                            if member.rejection == c.FAILURE_CATEGORY_UNSUBSCRIBED
                            else (c.MESSAGE_STATUS_FAILED, e.MESSAGE_EVENT_KIND_FAILED))
        try:
            shown = preview(row["channel"], content_of(row, ""), variables)
        except templating.TemplateError as exc:
            shown = ""
            if member.accepted:
                status, kind = c.MESSAGE_STATUS_FAILED, e.MESSAGE_EVENT_KIND_FAILED
                category, reason = c.FAILURE_CATEGORY_CONTENT_REJECTED, str(exc)
        values = dict(
            id=mid, campaign_id=row["id"], workspace_id=row["workspace_id"], contact_id=rec.contact_id,
            contact_name=templating.full_name(rec.first_name, rec.last_name), address=address or "",
            channel=row["channel"], status=status, status_rank=states.RANK[status],
            failure_category=category, error_description=reason, content_preview=shown,
            fields=variables, created_at=now, updated_at=now)
        async with self.store.write() as conn:
            saved = await messages_repo.add(conn, values)
            await campaigns_repo.count_recipient(conn, row["id"])
            result = raw_message(saved)
            await self.store.remember(conn, p.workspace, "TriggerCampaign", request.request_id, result, now,
                                      fingerprint=fp)
        base = dict(message_id=mid, campaign_id=row["id"], workspace_id=row["workspace_id"],
                    channel=row["channel"], occurred_at=to_ts(now), to=address or "")
        evs = [e.MessageEvent(event_id=f"{mid}:queued", kind=e.MESSAGE_EVENT_KIND_QUEUED,
                              status=c.MESSAGE_STATUS_QUEUED, **base)]
        if status != c.MESSAGE_STATUS_QUEUED:
            evs.append(e.MessageEvent(event_id=f"{mid}:{states.kind_name(kind)}", kind=kind, status=status,
                                      failure_category=category, error_description=reason, **base))
        await bus.publish_many(self.js, [(states.message_subject(ev.kind), ev, ev.event_id) for ev in evs])
        if self.on_trigger is not None:
            self.on_trigger()
        return mask_message(result, p)

    @staticmethod
    def _retryable(row: Any) -> None:
        if row["status"] not in (lifecycle.SENDING, lifecycle.PAUSED, lifecycle.DONE):
            raise precondition(f"campaigns/{row['id']}", "STATE",
                               f"campaign {row['id']} is {row['status']}; messages can be retried "
                               "while SENDING, PAUSED or DONE")

    @staticmethod
    async def _busy(conn: AsyncConnection, row: Any) -> None:
        """One retry at a time per channel: refused while another campaign of the channel is
        sending. TRIGGER campaigns stay SENDING for as long as they accept triggers, so they
        never count."""
        busy = await campaigns_repo.sending_sibling(conn, row)
        if busy is not None:
            raise precondition(f"campaigns/{row['id']}", "BUSY",
                               f"campaign {busy} of the same channel is sending; retry when it ends")

    async def _recheck(self, row: Any, chosen: list[Any]) -> dict[str, tuple[int, str]]:
        """Suppression and address validation again, now: the exclusion (category, reason) of
        each chosen FAILED message that must not be retried, by message id."""
        out: dict[str, tuple[int, str]] = {}
        ask: dict[str, list[str]] = {}  # address -> message ids
        for r in chosen:
            if r.failure_category == c.FAILURE_CATEGORY_UNSUBSCRIBED:
                out[r.id] = (r.failure_category, r.error_description or "opted out")
            elif not r.address:
                out[r.id] = (c.FAILURE_CATEGORY_INVALID_ADDRESS, r.error_description or "no address")
            elif r.failure_category == c.FAILURE_CATEGORY_INVALID_ADDRESS and r.dispatched_at is None:
                # Refused at build: the address never was valid.
                out[r.id] = (r.failure_category, r.error_description)
            else:
                ask.setdefault(r.address, []).append(r.id)
        if not ask:
            return out
        if self.recipients is None:
            raise precondition("campaigns", "CONFIG", "retrying needs the recipients service")
        spec = channels.spec(row["channel"])
        addresses = list(ask)
        verdict: dict[str, rpb.AudienceMember] = {}
        md = auth.call_metadata(workspace=row["workspace_id"])
        for i in range(0, len(addresses), RECHECK_CHUNK):
            req = rpb.ResolveAudienceRequest(channel=row["channel"], inline=[
                _recipient(spec, a) for a in addresses[i:i + RECHECK_CHUNK]])
            async for m in self.recipients.ResolveAudience(req, metadata=md, timeout=60):
                verdict[spec.address_of(m.recipient)] = m
        for address, ids in ask.items():
            m = verdict.get(address)
            if m is None:  # not answered for: never resend what could not be checked
                why = (c.FAILURE_CATEGORY_INVALID_ADDRESS, f"the address {address} could not be checked")
            elif m.accepted:
                continue
            else:
                why = (m.rejection, m.rejection_reason)
            for mid in ids:
                out[mid] = why
        return out

    async def RetryMessages(self, request: pb.RetryMessagesRequest, context: Any) -> pb.RetryMessagesResponse:
        p, prev = await self._begin("RetryMessages", request.request_id, pb.RetryMessagesResponse,
                                    "campaign_id", request.campaign_id, "operator", request=request)
        if prev is not None:
            return mask_retry(prev, p)
        fp = fingerprint("RetryMessages", request)
        conds = message_filter(request.filter)
        ids = list(request.message_ids)
        # Checked before asking the recipients service (outside the write transaction), and
        # again under the lock.
        async with self.store.read() as conn:
            row = await self.store.get_row(conn, request.campaign_id, p.workspace)
            if row is None:
                raise not_found("campaign", request.campaign_id)
            self._retryable(row)
            await self._busy(conn, row)
            failed = await messages_repo.retry_candidates(conn, request.campaign_id, conds, ids, True)
        excluded = await self._recheck(row, failed)
        now = self.clock.now()
        async with self.store.write() as conn:
            row = await self._locked(conn, request.campaign_id, p)
            self._retryable(row)
            await self._busy(conn, row)
            chosen = await messages_repo.retry_candidates(conn, request.campaign_id, conds, ids, False)
            # Only what was checked above (a message failing in between waits for the next retry).
            checked = {f.id for f in failed}
            retry = [r for r in chosen if r.status == c.MESSAGE_STATUS_FAILED and r.id in checked
                     and r.id not in excluded]
            for r in retry:
                await messages_repo.requeue(conn, r.id, r.attempt + 1, now)
            if retry and row["status"] == lifecycle.DONE:
                await Store.set_status(conn, row, lifecycle.SENDING, f"retrying {len(retry)} failed messages",
                                       p.name, now, completed_at=None)
            await Store.audit(conn, row, "retried", p.name, now,
                              f"{len(retry)} messages ({len(excluded)} excluded)",
                              {}, {"messages": jsonable(len(retry))})
            after = await self.store.get_row(conn, row["id"], p.workspace)
            prog = (await self.store.progress(conn, [row["id"]]))[row["id"]]
            result = pb.RetryMessagesResponse(
                retried=len(retry), skipped=len(chosen) - len(retry),
                campaign=self.store.to_proto(after, prog),
                excluded=[pb.RetryExclusion(message_id=mid, category=cat, reason=why)
                          for mid, (cat, why) in sorted(excluded.items())])
            await self.store.remember(conn, p.workspace, "RetryMessages", request.request_id, result, now,
                                      fingerprint=fp)
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
        return mask_retry(result, p)

    async def PromoteVariant(self, request: pb.PromoteVariantRequest, context: Any) -> pb.Campaign:
        if not request.variant:
            raise invalid({"variant": "required"})
        p, prev = await self._begin("PromoteVariant", request.request_id, pb.Campaign,
                                    "campaign_id", request.campaign_id, "operator", request=request)
        if prev is not None:
            return prev
        fp = fingerprint("PromoteVariant", request)
        now = self.clock.now()
        async with self.store.write() as conn:
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
            held_rows = await messages_repo.release_held(conn, row["id"], label, now)
            held = [(r.id, r.address) for r in held_rows]
            await messages_repo.set_previews(conn, previews(row, label, held_rows))
            await campaigns_repo.change(conn, row["id"], winner=request.variant, updated_at=now)
            await Store.audit(conn, row, "promoted", p.name, now, f"variant {request.variant} to {len(held)} held",
                              {"winner": jsonable("")}, {"winner": jsonable(request.variant)})
            after = await self.store.get_row(conn, row["id"], p.workspace)
            prog = (await self.store.progress(conn, [row["id"]]))[row["id"]]
            result = self.store.to_proto(after, prog)
            await self.store.remember(conn, p.workspace, "PromoteVariant", request.request_id, result, now,
                                      fingerprint=fp)
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

