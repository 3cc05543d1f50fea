"""Scheduler and dispatcher: PENDING -> BUILDING -> SENDING <-> PAUSED -> DONE, all state
in SQL, so a restarted process carries on where the last one stopped.

Several replicas: each tick a replica claims a lease (lease_owner/lease_until) on the
campaigns it will act on; on PostgreSQL the claim selects with FOR UPDATE SKIP LOCKED, so
two replicas never claim the same campaign and a dead replica's campaigns are taken over
when its lease runs out. SQLite has a single writer by nature: run one replica on it.
Every transition is also a compare-and-set on the status. Message ids are deterministic
(uuid5 of campaign, channel and address), so a build interrupted by a crash is redone.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import grpc
from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from herald.v1 import recipients_pb2 as rpb
from herald.v1 import recipients_pb2_grpc as rgrpc
from nats.errors import MaxPayloadError
from nats.js import JetStreamContext
from prometheus_client import Counter, Gauge
from sqlalchemy import and_, delete, func, insert, or_, select, update

from services.campaigns import exports, lifecycle
from services.campaigns.schema import campaign_targets, campaigns, job_errors, messages
from services.campaigns.store import Store
from services.campaigns.window import Window
from shared import auth, bus, states, templating
from shared.timeutil import Clock, aware, to_ts

log = logging.getLogger("herald.campaigns.scheduler")
S = c.MessageStatus
NS = uuid.UUID("5b0c1f6e-8d0a-4c57-9d4e-6f1d2a3b4c5d")

JOBS_PUBLISHED = Counter("herald_campaigns_jobs_published_total", "Jobs published to JOBS.", ["channel"])
JOBS_REFUSED = Counter("herald_campaigns_jobs_refused_total",
                       "Messages failed at dispatch because their job can never be published, "
                       "by reason (too_large, content).", ["reason"])
# Room left in a NATS message for the subject and the Nats-Msg-Id header.
HEADER_ROOM = 512
MESSAGES_BUILT = Counter("herald_campaigns_messages_built_total",
                         "Ledger rows created at build, by initial status.", ["status"])
CAMPAIGN_TRANSITIONS = Counter("herald_campaigns_transitions_total",
                               "Campaign state changes made by the scheduler.", ["to"])
ACTIVE = Gauge("herald_campaigns_active", "Campaigns in an active state.", ["status"])

REJECT_STATUS = {
    c.FAILURE_CATEGORY_UNSUBSCRIBED: (S.MESSAGE_STATUS_OPTED_OUT, e.MESSAGE_EVENT_KIND_OPTED_OUT),
}


SENDING_SUBJECT = states.message_subject(e.MESSAGE_EVENT_KIND_SENDING)


def message_id(campaign_id: str, channel: int, address: str) -> str:
    return str(uuid.uuid5(NS, f"{campaign_id}:{channel}:{address}"))


def variant_assigner(variants: list[dict], test_percent: int, accepted: int) -> Any:
    """Deterministic A/B assignment in audience order: the first test_percent of the accepted
    audience is split by split_percent, interleaved so every prefix of the send order is split
    fairly (smooth weighted round robin); the rest is held for the winner."""
    if not variants:
        return lambda: ("", False)
    test_n = accepted if not test_percent else round(accepted * test_percent / 100)
    quotas = [test_n * v["split_percent"] // 100 for v in variants]
    for i in range(test_n - sum(quotas)):
        quotas[i % len(quotas)] += 1
    used = [0] * len(variants)

    def next_one() -> tuple[str, bool]:
        open_ = [i for i, q in enumerate(quotas) if used[i] < q]
        if not open_:
            return "", True
        i = min(open_, key=lambda j: ((used[j] + 1) / quotas[j], j))
        used[i] += 1
        return variants[i]["name"], False

    return next_one


def channel_subject(channel: int) -> str:
    return bus.SUBJECT_SMS_JOBS if channel == c.CHANNEL_SMS else bus.SUBJECT_EMAIL_JOBS


def content_of(row: Any, variant: str) -> dict[str, str]:
    """The content a message gets: its A/B variant's ("B" or "B:rollout"), else the campaign's."""
    for v in row["variants"] or []:
        if v["name"] == variant.split(":", 1)[0]:
            return v["content"]
    return {"text": row["content_text"], "subject": row["content_subject"],
            "html": row["content_html"], "template_name": row["template_name"]}


def variables_of(r: c.Recipient, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every template variable of a recipient (what the job carries as MessageJob.fields);
    extra (per-trigger fields) win over the contact's custom fields."""
    custom = dict(r.fields)
    custom.update(extra or {})
    return templating.recipient_variables(
        first_name=r.first_name, last_name=r.last_name, phone=r.phone, email=r.email,
        external_id=r.external_id, language=r.language, contact_id=r.contact_id, fields=custom)


def preview(channel: int, content: Mapping[str, str], variables: Mapping[str, str]) -> str:
    """The first 100 characters of the rendered content (email: its subject, or the stored
    template's name). Raises templating.TemplateError when it cannot render."""
    if channel == c.CHANNEL_EMAIL:
        if content.get("template_name"):
            return f"[template {content['template_name']}]"[:100]
        source = content.get("subject", "")
    else:
        source = content.get("text", "")
    return templating.render(source, templating.context(variables))[:100]


def content_problem(content: Mapping[str, str]) -> str:
    """Why a content cannot be rendered at all (checked at create; defended here), or ""."""
    for part in ("text", "subject", "html"):
        source = content.get(part, "")
        if source and templating.is_template(source):
            try:
                templating.template(source, html=part == "html")
            except templating.TemplateError as exc:
                return f"content.{part} does not render: {exc}"
    return ""


def rate_problem(row: Any) -> str:
    rate = row["max_rate"] or 0.0
    if not math.isfinite(rate) or rate < 0:
        return f"max_rate {rate!r} is not a finite rate (messages per second, 0 = no cap)"
    return ""


def unsettled_condition() -> Any:
    final = list(states.FINAL)
    return and_(messages.c.status.not_in(final),
                ~and_(messages.c.channel == c.CHANNEL_EMAIL,
                      messages.c.status == S.MESSAGE_STATUS_SUBMITTED))


class Scheduler:
    def __init__(self, store: Store, js: JetStreamContext, recipients: rgrpc.RecipientServiceStub,
                 clock: Clock | None = None, interval: float = 0.2, batch: int = 500,
                 job_ttl: float = 86400.0, lease: float = 10.0, auto_pause: int = 5,
                 owner: str | None = None, export_ttl: float = 3600.0,
                 max_payload: int = 1024 * 1024) -> None:
        self.max_payload = max_payload  # the NATS server's limit (Client.max_payload)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease = lease
        self.auto_pause = auto_pause
        self.export_ttl = export_ttl
        self.exports_at: datetime | None = None
        self.buckets: dict[str, tuple[float, float]] = {}  # campaign -> (tokens, at)
        self.store = store
        self.js = js
        self.recipients = recipients
        self.clock = clock or Clock()
        self.interval = interval
        self.batch = batch
        self.job_ttl = job_ttl
        self.wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("scheduler tick failed")
            self.wake.clear()
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.wake.wait())]
            await asyncio.wait(waiters, timeout=self.interval, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()

    async def claim(self, now: datetime) -> list[Any]:
        """Lease the campaigns this replica acts on in this tick."""
        lease_until = now + timedelta(seconds=self.lease)
        candidates = (
            select(campaigns.c.id)
            .where(campaigns.c.status.in_(list(lifecycle.ACTIVE)),
                   or_(campaigns.c.lease_until.is_(None), campaigns.c.lease_until < now,
                       campaigns.c.lease_owner == self.owner))
            .order_by(campaigns.c.created_at)
            .with_for_update(skip_locked=True)
        )
        async with self.store.engine.begin() as conn:
            ids = [r[0] for r in await conn.execute(candidates)]
            if not ids:
                return []
            await conn.execute(update(campaigns).where(campaigns.c.id.in_(ids)).values(
                lease_owner=self.owner, lease_until=lease_until))
            return list((await conn.execute(select(campaigns).where(campaigns.c.id.in_(ids))
                                            .order_by(campaigns.c.created_at))).mappings().all())

    async def tick(self) -> int:
        """One pass over the leased campaigns; returns how many jobs it dispatched."""
        now = self.clock.now()
        rows = await self.claim(now)
        async with self.store.engine.connect() as conn:
            counts = dict((await conn.execute(select(campaigns.c.status, func.count()).where(
                campaigns.c.status.in_(list(lifecycle.ACTIVE))).group_by(campaigns.c.status))).all())
        for st in lifecycle.ACTIVE:
            ACTIVE.labels(st).set(counts.get(st, 0))
        dispatched = 0
        # Exports: when asked (CreateExport wakes the scheduler) and once a second for
        # expiry, not on every tick: the pass is a write transaction.
        if self.wake.is_set() or self.exports_at is None or (now - self.exports_at).total_seconds() >= 1:
            self.exports_at = now
            try:
                await exports.run_pending(self.store, self.clock, self.export_ttl)
            except Exception:
                log.exception("exports failed")
        for row in rows:
            try:
                dispatched += await self.step(row, now)
            except Exception:
                log.exception("scheduler step failed", extra={"campaign_id": row["id"]})
        return dispatched

    async def step(self, row: Any, now: datetime) -> int:
        status, cid = row["status"], row["id"]
        end = aware(row["end_at"])
        if end is not None and now >= end and status != lifecycle.BUILDING:
            await self.end_reached(row)
            return 0
        window = Window.of(row)
        if status == lifecycle.PENDING:
            start = aware(row["start_at"])
            if start is None or start <= now:
                await self.build(row)
        elif status == lifecycle.BUILDING:  # interrupted build: redo it
            await self.build(row)
        elif status == lifecycle.PAUSED:
            if row["paused_by"] == "window" and window is not None and window.is_open(now):
                await self.transition(cid, lifecycle.SENDING, "sending window opened", paused_by="")
        elif status == lifecycle.SENDING:
            if window is not None and not window.is_open(now):
                nxt = window.next_opening(now).isoformat(timespec="minutes")
                await self.transition(cid, lifecycle.PAUSED,
                                      f"outside sending window (reopens {nxt})", paused_by="window")
                return 0
            if await self.too_many_failures(row):
                return 0
            n = await self.dispatch(row)
            if row["mode"] != pb.CAMPAIGN_MODE_TRIGGER:
                await self.maybe_complete(row)
            return n
        return 0

    async def end_reached(self, row: Any) -> None:
        """end_at passed: a TRIGGER campaign is done; any other campaign expires if messages
        were still waiting to be sent (they fail as EXPIRED), else it completes normally."""
        cid, now = row["id"], self.clock.now()
        if row["mode"] == pb.CAMPAIGN_MODE_TRIGGER and row["status"] != lifecycle.PENDING:
            await self.fail_undispatched(row, "campaign ended before this message was sent")
            await self.transition(cid, lifecycle.DONE, "trigger campaign reached its end",
                                  completed_at=now)
            return
        async with self.store.engine.connect() as conn:
            waiting = (await conn.execute(select(func.count()).select_from(messages).where(
                messages.c.campaign_id == cid, messages.c.dispatched_at.is_(None),
                messages.c.status == S.MESSAGE_STATUS_QUEUED))).scalar_one()
        if row["status"] == lifecycle.PENDING or waiting:
            await self.fail_undispatched(row, "campaign window ended before this message was sent")
            await self.transition(cid, lifecycle.EXPIRED, "end time passed before completion",
                                  completed_at=now)
        elif row["status"] == lifecycle.SENDING:
            await self.maybe_complete(row)

    async def too_many_failures(self, row: Any) -> bool:
        """Auto-pause after N consecutive failed messages (seed: 5): a broken route or an
        expired account should not burn the whole audience."""
        n = row["auto_pause_failures"] or self.auto_pause
        if n <= 0:
            return False
        since = aware(row["failures_reset_at"]) or aware(row["started_at"])
        q = (select(messages.c.status).where(
            messages.c.campaign_id == row["id"], messages.c.dispatched_at.is_not(None),
            messages.c.status_rank >= states.RANK[S.MESSAGE_STATUS_ASSUMED_DELIVERED],
            messages.c.updated_at.is_not(None))
            .order_by(messages.c.updated_at.desc()).limit(n))
        if since is not None:
            q = q.where(messages.c.updated_at > since)
        async with self.store.engine.connect() as conn:
            last = [r[0] for r in await conn.execute(q)]
        if len(last) < n or any(st != S.MESSAGE_STATUS_FAILED for st in last):
            return False
        await self.transition(row["id"], lifecycle.PAUSED,
                              f"auto-paused after {n} consecutive failures", paused_by="failures")
        return True

    # --- build -----------------------------------------------------------------------------
    async def transition(self, campaign_id: str, target: str, reason: str, **values: Any) -> Any:
        now = self.clock.now()
        async with self.store.engine.begin() as conn:
            row = await self.store.get_row(conn, campaign_id, None, for_update=True)
            previous = row["status"]
            if row["status"] != target:
                await Store.set_status(conn, row, target, reason, "scheduler", now, **values)
            row = await self.store.get_row(conn, campaign_id, None)
        CAMPAIGN_TRANSITIONS.labels(target).inc()
        event_id = str(uuid.uuid4())
        await bus.publish(self.js, "events.campaign.status_changed", e.CampaignEvent(
            event_id=event_id, kind=e.CAMPAIGN_EVENT_KIND_STATUS_CHANGED,
            campaign_id=campaign_id, workspace_id=row["workspace_id"], status=target,
            previous_status=previous, reason=reason, occurred_at=to_ts(now), actor="scheduler",
            total_messages=row["recipients_count"]), event_id)
        return row

    async def record_error(self, row: Any, stage: str, message: str) -> bool:
        """Errors tab, Job sub-tab. Repeats of the same error are not stored again; returns
        whether this one was new."""
        async with self.store.engine.begin() as conn:
            last = (await conn.execute(select(job_errors.c.message).where(
                job_errors.c.campaign_id == row["id"]).order_by(job_errors.c.id.desc()).limit(1))).first()
            if last is None or last[0] != message:
                await Store.job_error(conn, row, stage, message, self.clock.now())
                return True
        return False

    async def resolve(self, row: Any) -> list[rpb.AudienceMember]:
        targets = await self.store.load_targets(row["id"])
        if not targets and not row["category_ids"]:
            return []  # a TRIGGER campaign may start with no audience
        req = rpb.ResolveAudienceRequest(channel=row["channel"], category_ids=row["category_ids"] or [],
                                         inline=targets)
        md = auth.call_metadata(workspace=row["workspace_id"])
        return [m async for m in self.recipients.ResolveAudience(req, metadata=md, timeout=600)]

    async def build(self, row: Any) -> None:
        cid = row["id"]
        if row["status"] == lifecycle.PENDING:
            row = await self.transition(cid, lifecycle.BUILDING, "building recipient list",
                                        started_at=self.clock.now())
        try:
            members = await self.resolve(row)
        except grpc.aio.AioRpcError as exc:
            transient = exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            await self.record_error(row, "build", f"recipients service: {exc.code().name}: {exc.details()}"
                                    + (" (retrying)" if transient else ""))
            if transient:
                log.warning("recipients unavailable, build retried next tick",
                            extra={"campaign_id": cid, "code": exc.code().name})
                return
            await self.transition(cid, lifecycle.FAILED, f"audience: {exc.details()}",
                                  completed_at=self.clock.now())
            return
        now, seen, rows, events = self.clock.now(), set(), [], []
        accepted = sum(1 for m in members if m.accepted)
        assign = variant_assigner(row["variants"] or [], row["test_percent"], accepted)
        for m in members:
            r = m.recipient
            address = r.phone if row["channel"] == c.CHANNEL_SMS else r.email
            key = address or f"contact:{r.contact_id}"
            if key in seen:
                continue
            seen.add(key)
            mid = message_id(cid, row["channel"], key)
            status, kind = S.MESSAGE_STATUS_QUEUED, e.MESSAGE_EVENT_KIND_QUEUED
            if not m.accepted:
                status, kind = REJECT_STATUS.get(m.rejection, (S.MESSAGE_STATUS_FAILED,
                                                               e.MESSAGE_EVENT_KIND_FAILED))
            variant, held = assign() if m.accepted else ("", False)
            variables = variables_of(r)
            category, reason = (0, "") if m.accepted else (m.rejection, m.rejection_reason)
            try:
                shown = preview(row["channel"], content_of(row, variant), variables)
            except templating.TemplateError as exc:  # this recipient's values break the template
                shown = ""
                if m.accepted:
                    status, kind = S.MESSAGE_STATUS_FAILED, e.MESSAGE_EVENT_KIND_FAILED
                    category, reason = c.FAILURE_CATEGORY_CONTENT_REJECTED, str(exc)
                    held = False
            rows.append(dict(
                variant=variant, held=held,
                id=mid, campaign_id=cid, workspace_id=row["workspace_id"], contact_id=r.contact_id,
                contact_name=templating.full_name(r.first_name, r.last_name),
                address=address or "", channel=row["channel"], status=status,
                status_rank=states.RANK[status], failure_category=category, error_description=reason,
                content_preview=shown, fields=variables, created_at=now, updated_at=now,
            ))
            MESSAGES_BUILT.labels(states.status_name(status)).inc()
            if held:  # announced when the winner is promoted, with its variant label
                continue
            base = dict(message_id=mid, campaign_id=cid, workspace_id=row["workspace_id"],
                        channel=row["channel"], occurred_at=to_ts(now), to=address or "",
                        variant=variant)
            events.append(e.MessageEvent(event_id=f"{mid}:queued", kind=e.MESSAGE_EVENT_KIND_QUEUED,
                                         status=S.MESSAGE_STATUS_QUEUED, **base))
            if status != S.MESSAGE_STATUS_QUEUED:
                events.append(e.MessageEvent(
                    event_id=f"{mid}:{states.kind_name(kind)}", kind=kind, status=status,
                    failure_category=category, error_description=reason, **base))
        async with self.store.engine.begin() as conn:
            await conn.execute(delete(messages).where(messages.c.campaign_id == cid))
            for i in range(0, len(rows), 1000):
                await conn.execute(insert(messages), rows[i:i + 1000])
            await conn.execute(update(campaigns).where(campaigns.c.id == cid).values(
                recipients_count=len(rows)))
        # Deterministic event ids: a rebuild republishes the same facts, consumers drop them.
        await bus.publish_many(self.js, [(states.message_subject(ev.kind), ev, ev.event_id)
                                         for ev in events])
        async with self.store.engine.begin() as conn:
            await conn.execute(delete(campaign_targets).where(campaign_targets.c.campaign_id == cid))
        await self.transition(cid, lifecycle.SENDING, f"built {len(rows)} messages")
        log.info("campaign built", extra={"campaign_id": cid, "messages": len(rows),
                                          "rejected": sum(1 for m in members if not m.accepted)})

    # --- dispatch ----------------------------------------------------------------------------
    def allowance(self, row: Any, dispatched: int, total: int) -> int:
        """How many more jobs the mode and the rate cap allow now. SPREAD paces evenly over
        start..end; max_rate is a token bucket (one second of burst)."""
        n = self.batch
        now = self.clock.now()
        if row["mode"] == pb.CAMPAIGN_MODE_SPREAD and row["end_at"] and row["start_at"]:
            start, end = aware(row["start_at"]), aware(row["end_at"])
            # Message i is due at start + i * span / total, looked at one tick ahead so the
            # last one leaves before end_at (which would expire the campaign) despite the
            # tick granularity.
            span = max((end - start).total_seconds(), 1.0)
            elapsed = (now - start).total_seconds() + self.interval
            due = min(total, math.floor(total * elapsed / span) + 1) if elapsed >= 0 else 0
            n = min(n, due - dispatched)
        rate = row["max_rate"] or 0.0
        if rate > 0:
            t = now.timestamp()
            tokens, at = self.buckets.get(row["id"], (min(rate, 1.0), t))
            tokens = min(max(rate, 1.0), tokens + (t - at) * rate)
            self.buckets[row["id"]] = (tokens, t)
            n = min(n, math.floor(tokens))
        return max(0, n)

    def spend(self, campaign_id: str, n: int) -> None:
        if campaign_id in self.buckets:
            tokens, at = self.buckets[campaign_id]
            self.buckets[campaign_id] = (tokens - n, at)

    async def dispatch(self, row: Any) -> int:
        cid = row["id"]
        problem = rate_problem(row)
        if problem:  # refused at create; a row from before that check must not loop here
            await self.fail_campaign(row, problem, c.FAILURE_CATEGORY_CONFIG_ERROR)
            return 0
        async with self.store.engine.connect() as conn:
            total, dispatched = (await conn.execute(select(
                func.count(), func.count(messages.c.dispatched_at)).where(
                messages.c.campaign_id == cid, messages.c.status_rank >= 0))).one()
            n = self.allowance(row, dispatched, total)
            if n <= 0:
                return 0
            pending = (await conn.execute(select(messages).where(
                messages.c.campaign_id == cid, messages.c.status == S.MESSAGE_STATUS_QUEUED,
                messages.c.dispatched_at.is_(None), messages.c.held.is_(False))
                .order_by(messages.c.created_at, messages.c.id)
                .limit(n))).mappings().all()
        if not pending:
            return 0
        now = self.clock.now()
        expires, at = to_ts(now + timedelta(seconds=self.job_ttl)), to_ts(now)
        subject = channel_subject(row["channel"])
        limit = self.max_payload
        items: list[tuple[str, Any, str]] = []
        sent_ids: list[str] = []
        refused: dict[str, list[str]] = {}  # reason -> message ids that can never be published
        problems: dict[str, str] = {}  # variant name -> why its content cannot render
        for m in pending:
            ct = content_of(row, m["variant"])
            key = m["variant"].split(":", 1)[0]
            if key not in problems:
                problems[key] = content_problem(ct)
            if problems[key]:
                refused.setdefault(problems[key], []).append(m["id"])
                continue
            job = e.MessageJob(
                message_id=m["id"], campaign_id=cid, workspace_id=row["workspace_id"],
                channel=row["channel"], attempt=m["attempt"], sender=row["sender"], to=m["address"],
                contact_id=m["contact_id"], variant=m["variant"], fields=m["fields"] or {},
                text=ct.get("text", ""), subject=ct.get("subject", ""), html=ct.get("html", ""),
                created_at=to_ts(aware(m["created_at"])), expires_at=expires)
            if job.ByteSize() + HEADER_ROOM > limit:
                refused.setdefault(f"the message job is over the bus payload limit of {limit} bytes "
                                   "(content too large)", []).append(m["id"])
                continue
            items.append((subject, job, f"{m['id']}:{m['attempt']}"))
            # The live "sending" count: one event per hand-over, in the same batch as the job.
            ev = e.MessageEvent(
                event_id=f"{m['id']}:sending:{m['attempt']}", kind=e.MESSAGE_EVENT_KIND_SENDING,
                status=S.MESSAGE_STATUS_SENDING, message_id=m["id"], campaign_id=cid,
                workspace_id=row["workspace_id"], channel=row["channel"], occurred_at=at,
                to=m["address"], variant=m["variant"], attempt=m["attempt"])
            items.append((SENDING_SUBJECT, ev, ev.event_id))
            sent_ids.append(m["id"])
        for reason, ids in refused.items():
            await self.refuse(row, ids, reason)
        if not items:
            return 0
        try:
            await bus.publish_many(self.js, items)
        except MaxPayloadError as exc:  # over the server's limit despite the check above
            await self.fail_campaign(row, f"publishing jobs failed: {exc!r}", c.FAILURE_CATEGORY_CONTENT_REJECTED)
            return 0
        except Exception as exc:  # NATS unavailable: nothing marked dispatched, retried next tick
            if await self.record_error(row, "dispatch", f"publishing jobs failed ({type(exc).__name__}: "
                                                        f"{exc}); retrying"):
                log.warning("publishing jobs failed, retrying", extra={"campaign_id": cid})
            return 0
        self.spend(cid, len(sent_ids))
        JOBS_PUBLISHED.labels(c.Channel.Name(row["channel"])).inc(len(sent_ids))
        async with self.store.engine.begin() as conn:
            await conn.execute(update(messages).where(messages.c.id.in_(sent_ids)).values(dispatched_at=now))
            # The gateway may already have reported SUBMITTED: only QUEUED rows move to SENDING.
            await conn.execute(update(messages).where(
                messages.c.id.in_(sent_ids), messages.c.status == S.MESSAGE_STATUS_QUEUED).values(
                status=S.MESSAGE_STATUS_SENDING, status_rank=states.RANK[S.MESSAGE_STATUS_SENDING]))
        return len(sent_ids)

    async def refuse(self, row: Any, ids: list[str], reason: str) -> None:
        """Messages whose job can never be published (content too large for the bus, a
        template that does not render) fail now, with one job error, instead of being retried
        on every tick."""
        JOBS_REFUSED.labels("too_large" if "payload" in reason else "content").inc(len(ids))
        await self.record_error(row, "dispatch", f"messages not sent: {reason}")
        await self._finish(row["id"], ids, S.MESSAGE_STATUS_FAILED, e.MESSAGE_EVENT_KIND_FAILED,
                           c.FAILURE_CATEGORY_CONTENT_REJECTED, reason)

    async def fail_campaign(self, row: Any, reason: str, category: int) -> None:
        """A campaign that cannot be dispatched at all: FAILED with the reason, its waiting
        messages FAILED too (messages already with a gateway finish on their own)."""
        await self.record_error(row, "dispatch", reason)
        await self._finish_undispatched(row["id"], S.MESSAGE_STATUS_FAILED, e.MESSAGE_EVENT_KIND_FAILED,
                                        category, reason)
        await self.transition(row["id"], lifecycle.FAILED, reason, completed_at=self.clock.now())
        log.error("campaign failed at dispatch", extra={"campaign_id": row["id"], "reason": reason})

    async def maybe_complete(self, row: Any) -> None:
        cid = row["id"]
        async with self.store.engine.connect() as conn:
            left = (await conn.execute(select(func.count()).select_from(messages).where(
                messages.c.campaign_id == cid, unsettled_condition()))).scalar_one()
        if left == 0:
            await self.transition(cid, lifecycle.DONE, "all messages final",
                                  completed_at=self.clock.now())
            log.info("campaign done", extra={"campaign_id": cid})

    async def cancel_queued(self, campaign_id: str) -> None:
        """After a cancel: messages not yet handed to a gateway become CANCELLED."""
        await self._finish_undispatched(campaign_id, S.MESSAGE_STATUS_CANCELLED,
                                        e.MESSAGE_EVENT_KIND_CANCELLED, 0, "")

    async def fail_undispatched(self, row: Any, reason: str) -> None:
        await self._finish_undispatched(row["id"], S.MESSAGE_STATUS_FAILED, e.MESSAGE_EVENT_KIND_FAILED,
                                        c.FAILURE_CATEGORY_EXPIRED, reason)

    async def _finish_undispatched(self, campaign_id: str, status: int, kind: int, category: int,
                                   reason: str) -> None:
        async with self.store.engine.connect() as conn:
            ids = [r[0] for r in await conn.execute(select(messages.c.id).where(
                messages.c.campaign_id == campaign_id, messages.c.dispatched_at.is_(None),
                messages.c.status == S.MESSAGE_STATUS_QUEUED))]
        await self._finish(campaign_id, ids, status, kind, category, reason)

    async def _finish(self, campaign_id: str, ids: list[str], status: int, kind: int, category: int,
                      reason: str) -> None:
        """Move these messages, if still QUEUED, to a final status and announce it."""
        now = self.clock.now()
        moved: list[tuple[str, int]] = []
        async with self.store.engine.begin() as conn:
            row = await self.store.get_row(conn, campaign_id, None)
            for i in range(0, len(ids), 1000):
                chunk = (messages.c.id.in_(ids[i:i + 1000]), messages.c.status == S.MESSAGE_STATUS_QUEUED)
                moved += [(r.id, r.attempt) for r in await conn.execute(
                    select(messages.c.id, messages.c.attempt).where(*chunk))]
                await conn.execute(update(messages).where(*chunk).values(
                    status=status, status_rank=states.RANK[status], failure_category=category,
                    error_description=reason, updated_at=now))
        if row is None or not moved:
            return
        events = []
        name = states.kind_name(kind)
        for mid, attempt in moved:
            # A retried message's outcome is a new fact: its id names the attempt.
            event_id = f"{mid}:{name}" if attempt <= 1 else f"{mid}:{name}:{attempt}"
            ev = e.MessageEvent(event_id=event_id, kind=kind, message_id=mid, attempt=attempt,
                                campaign_id=campaign_id, workspace_id=row["workspace_id"],
                                channel=row["channel"], status=status, occurred_at=to_ts(now),
                                failure_category=category, error_description=reason)
            events.append((states.message_subject(kind), ev, ev.event_id))
        await bus.publish_many(self.js, events)
