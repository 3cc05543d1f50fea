"""Scheduler and dispatcher: PENDING -> BUILDING -> SENDING <-> PAUSED -> DONE, all state
in SQL, so a restarted process carries on where the last one stopped.

Several replicas: each tick a replica claims a lease (lease_owner/lease_until) on the
campaigns it will act on; on PostgreSQL the claim selects with FOR UPDATE SKIP LOCKED, so
two replicas never claim the same campaign and a dead replica's campaigns are taken over
when its lease runs out. SQLite has a single writer by nature: run one replica on it.
Every transition is also a compare-and-set on the status. Message ids are deterministic
(uuid5 of campaign, channel and address), so a build interrupted by a crash is taken up again
where it stopped: rows are only ever added (never deleted), events carry deterministic ids,
and the inline targets are dropped in the transaction that moves the campaign to SENDING.

The scheduler also sweeps the ledger for SMS left SUBMITTED longer than
HERALD_ASSUMED_DELIVERED_AFTER and reports them ASSUMED_DELIVERED: the schedule lives in SQL,
so nothing held in Redis or a gateway is needed to finish a campaign whose receipts never came.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
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
from sqlalchemy import Table, and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from services.campaigns import exports, lifecycle, settings
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
BUILDS = Counter("herald_campaigns_builds_total",
                 "Campaign builds that finished, by result: built (in one pass), resumed (taken up "
                 "again after an interruption or a recipients error), empty_failed (a non-empty "
                 "request that yielded no message: the campaign FAILED).", ["result"])
ASSUMED = Counter("herald_campaigns_assumed_delivered_total",
                  "SMS the ledger sweep reported ASSUMED_DELIVERED (SUBMITTED for longer than "
                  "HERALD_ASSUMED_DELIVERED_AFTER without a final receipt).")
SCHEDULER_ERRORS = Counter("herald_campaigns_scheduler_errors_total",
                           "Scheduler failures, by stage (tick, step, exports, assumed_sweep); each "
                           "is logged with its cause and retried on a later tick.", ["stage"])

BUILD_CHUNK = 1000  # ledger rows per insert transaction and per event batch at build
SWEEP_PAGE = 1000  # messages per assumed-delivery query and publish batch
SWEEP_PAGES = 20  # pages per sweep; a larger backlog carries on at the next tick
# A DONE campaign has no SMS left SUBMITTED (maybe_complete counts them as unsettled), except
# a TRIGGER campaign, which is DONE when its end time passes; any campaign that was sending
# and stopped otherwise may still have some with the carrier.
SWEPT = [lifecycle.SENDING, lifecycle.PAUSED, lifecycle.CANCELLED, lifecycle.FAILED, lifecycle.EXPIRED]
# The events a rejected recipient's row announces at build, besides "queued".
BUILT_KIND = {S.MESSAGE_STATUS_FAILED: e.MESSAGE_EVENT_KIND_FAILED,
              S.MESSAGE_STATUS_OPTED_OUT: e.MESSAGE_EVENT_KIND_OPTED_OUT}

REJECT_STATUS = {
    c.FAILURE_CATEGORY_UNSUBSCRIBED: (S.MESSAGE_STATUS_OPTED_OUT, e.MESSAGE_EVENT_KIND_OPTED_OUT),
}


SENDING_SUBJECT = states.message_subject(e.MESSAGE_EVENT_KIND_SENDING)
# error_code the gateways give a message that may have been accepted but was not recorded.
ABANDONED_CODE = "ABANDONED"


def message_id(campaign_id: str, channel: int, address: str) -> str:
    return str(uuid.uuid5(NS, f"{campaign_id}:{channel}:{address}"))


def describe(exc: BaseException) -> str:
    """An exception as a log field: its type and text (some have an empty str())."""
    return f"{type(exc).__name__}: {exc}"


def insert_missing(conn: AsyncConnection, table: Table) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING on SQLite and PostgreSQL alike."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def drop_targets(campaign_id: str) -> Callable[[AsyncConnection], Awaitable[None]]:
    """The inline targets go in the transaction that ends the build: until then a resumed
    build still has them."""
    async def run(conn: AsyncConnection) -> None:
        await conn.execute(delete(campaign_targets).where(campaign_targets.c.campaign_id == campaign_id))
    return run


async def _each(items: Iterable[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


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
                 max_payload: int = 1024 * 1024, assumed_after: float | None = None,
                 assumed_sweep: float | None = None) -> None:
        self.max_payload = max_payload  # the NATS server's limit (Client.max_payload)
        self.assumed_after = (settings.ASSUMED_DELIVERED_AFTER.get_float()
                              if assumed_after is None else assumed_after)
        self.assumed_sweep = (settings.ASSUMED_DELIVERY_SWEEP.get_float()
                              if assumed_sweep is None else assumed_sweep)
        self.sweep_at: datetime | None = None
        self.sweep_cursor = ""  # the last message id of an unfinished sweep
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
            except Exception as exc:  # SQL or NATS unavailable: the next tick tries again
                SCHEDULER_ERRORS.labels("tick").inc()
                log.exception("scheduler tick failed", extra={"error": describe(exc)})
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
            except Exception as exc:
                SCHEDULER_ERRORS.labels("exports").inc()
                log.exception("exports failed", extra={"error": describe(exc)})
        for row in rows:
            try:
                dispatched += await self.step(row, now)
            except Exception as exc:  # the campaign's state is as the last commit left it
                SCHEDULER_ERRORS.labels("step").inc()
                log.exception("scheduler step failed", extra={
                    "campaign_id": row["id"], "status": row["status"], "error": describe(exc)})
        if self.assumed_after > 0 and (self.sweep_cursor or self.sweep_at is None
                                       or (now - self.sweep_at).total_seconds() >= self.assumed_sweep):
            self.sweep_at = now
            try:
                await self.sweep_assumed(now)
            except Exception as exc:
                SCHEDULER_ERRORS.labels("assumed_sweep").inc()
                log.warning("assumed-delivery sweep failed", extra={"error": describe(exc)})
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
            # Auto-pause only while messages remain to send (too_many_failures checks): a
            # campaign whose messages are all final completes below, whatever its last outcomes.
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
        """Auto-pause after N consecutive failed messages (default 5): a broken route or an
        expired account should not burn the whole audience. Only while messages remain to be
        sent: a campaign with nothing left to hand over completes instead (maybe_complete),
        whatever its last outcomes were. An auto-pause is never lifted by the scheduler: the
        failures mean something is broken (route, account, content) that only a person can
        fix, and resuming by itself would burn the next N messages on the same fault."""
        n = row["auto_pause_failures"] or self.auto_pause
        if n <= 0:
            return False
        since = aware(row["failures_reset_at"]) or aware(row["started_at"])
        # ABANDONED outcomes (a gateway crash or lost send markers: the carrier may have
        # accepted the message) say nothing about the route: they neither count as failures
        # nor break a streak.
        q = (select(messages.c.status).where(
            messages.c.campaign_id == row["id"], messages.c.dispatched_at.is_not(None),
            messages.c.status_rank >= states.RANK[S.MESSAGE_STATUS_ASSUMED_DELIVERED],
            messages.c.updated_at.is_not(None), messages.c.error_code != ABANDONED_CODE)
            .order_by(messages.c.updated_at.desc()).limit(n))
        if since is not None:
            q = q.where(messages.c.updated_at > since)
        async with self.store.engine.connect() as conn:
            last = [r[0] for r in await conn.execute(q)]
        if len(last) < n or any(st != S.MESSAGE_STATUS_FAILED for st in last):
            return False
        if not await self.left_to_send(row["id"]):
            return False
        await self.transition(
            row["id"], lifecycle.PAUSED,
            f"auto-paused after {n} consecutive failures; it does not resume by itself: fix the "
            f"cause (route, account, content), then resume it (ResumeCampaign, or "
            f"`herald resume {row['id']}`)", paused_by="failures")
        log.warning("campaign auto-paused", extra={"campaign_id": row["id"], "failures": n})
        return True

    async def left_to_send(self, campaign_id: str) -> bool:
        """Whether any message still waits to be handed to a gateway (A/B-held ones wait for
        the winner, not for this campaign's route)."""
        async with self.store.engine.connect() as conn:
            return (await conn.execute(select(messages.c.id).where(
                messages.c.campaign_id == campaign_id, messages.c.status == S.MESSAGE_STATUS_QUEUED,
                messages.c.dispatched_at.is_(None), messages.c.held.is_(False)).limit(1))).first() is not None

    # --- build -----------------------------------------------------------------------------
    async def transition(self, campaign_id: str, target: str, reason: str,
                         also: Callable[[AsyncConnection], Awaitable[None]] | None = None,
                         **values: Any) -> Any:
        """Move the campaign (compare-and-set) and run `also` in the same transaction."""
        now = self.clock.now()
        async with self.store.engine.begin() as conn:
            row = await self.store.get_row(conn, campaign_id, None, for_update=True)
            previous = row["status"]
            if row["status"] != target:
                await Store.set_status(conn, row, target, reason, "scheduler", now, **values)
            if also is not None:
                await also(conn)
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

    async def build(self, row: Any) -> None:
        """PENDING/BUILDING -> SENDING, resumable at every step: whatever stops it (a crash, the
        recipients service, SQL or NATS) leaves the campaign BUILDING with its inline targets,
        and the next tick takes the build up again.
        1. PENDING -> BUILDING (started_at).
        2. The audience streams into the ledger in chunks; only missing rows are inserted (ids
           are deterministic), so a resumed build adds what an interrupted one did not write
           and never deletes, changes or shrinks what is there.
        3. The queued (and rejection) events are published from the ledger with deterministic
           ids: a resumed build's copies are dropped by JetStream and by the consumers.
        4. One transaction drops the inline targets and moves the campaign to SENDING.
        A non-empty request (inline recipients or categories) that yields no message is a job
        error and the campaign FAILS: it never completes as "built 0 messages"."""
        cid = row["id"]
        resumed = row["status"] == lifecycle.BUILDING
        if row["status"] == lifecycle.PENDING:
            row = await self.transition(cid, lifecycle.BUILDING, "building recipient list",
                                        started_at=self.clock.now())
        targets = await self.store.load_targets(cid)
        try:
            added = await self.write_audience(row, targets)
        except grpc.aio.AioRpcError as exc:
            transient = exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            await self.record_error(row, "build", f"recipients service: {exc.code().name}: {exc.details()}"
                                    + (" (retrying)" if transient else ""))
            if transient:
                log.warning("recipients unavailable, build retried next tick", extra={
                    "campaign_id": cid, "code": exc.code().name, "error": describe(exc)})
                return
            log.error("audience refused, campaign failed", extra={
                "campaign_id": cid, "code": exc.code().name, "error": describe(exc)})
            await self.transition(cid, lifecycle.FAILED, f"audience: {exc.details()}",
                                  also=drop_targets(cid), completed_at=self.clock.now())
            return
        async with self.store.engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(messages).where(
                messages.c.campaign_id == cid))).scalar_one()
        categories = len(row["category_ids"] or [])
        if total == 0 and (targets or categories):
            await self.build_empty(row, len(targets), categories)
            return
        await self.announce_built(row)
        await self.transition(cid, lifecycle.SENDING, f"built {total} messages",
                              also=drop_targets(cid), recipients_count=total)
        BUILDS.labels("resumed" if resumed else "built").inc()
        log.info("campaign built", extra={"campaign_id": cid, "messages": total, "added": added,
                                          "resumed": resumed})

    async def build_empty(self, row: Any, inline: int, categories: int) -> None:
        reason = (f"the audience yielded no messages ({inline} inline recipients, {categories} "
                  "categories asked): nothing to send; check the categories' contacts and the "
                  "recipients service, then create the campaign again")
        await self.record_error(row, "build", reason)
        await self.transition(row["id"], lifecycle.FAILED, reason, also=drop_targets(row["id"]),
                              completed_at=self.clock.now(), recipients_count=0)
        BUILDS.labels("empty_failed").inc()
        log.error("campaign build yielded no messages", extra={
            "campaign_id": row["id"], "inline": inline, "categories": categories})

    async def write_audience(self, row: Any, targets: list[c.Recipient]) -> int:
        """Resolve the audience and insert its missing ledger rows chunk by chunk as the stream
        arrives (an A/B split needs the accepted count first, so that audience is read whole).
        Returns how many rows were added."""
        if not targets and not row["category_ids"]:
            return 0  # a TRIGGER campaign may start with no audience
        req = rpb.ResolveAudienceRequest(channel=row["channel"], category_ids=row["category_ids"] or [],
                                         inline=targets)
        md = auth.call_metadata(workspace=row["workspace_id"])
        stream = self.recipients.ResolveAudience(req, metadata=md, timeout=600)
        source: AsyncIterator[rpb.AudienceMember] = stream.__aiter__()
        assign = variant_assigner([], 0, 0)
        if row["variants"]:
            members = [m async for m in stream]
            assign = variant_assigner(row["variants"], row["test_percent"],
                                      sum(1 for m in members if m.accepted))
            source = _each(members)
        now, seen, chunk, added = self.clock.now(), set(), [], 0
        async for m in source:
            values = self.ledger_row(row, m, assign, now, seen)
            if values is not None:
                chunk.append(values)
            if len(chunk) >= BUILD_CHUNK:
                added += await self.insert_rows(chunk)
                chunk = []
        if chunk:
            added += await self.insert_rows(chunk)
        return added

    @staticmethod
    def ledger_row(row: Any, m: rpb.AudienceMember, assign: Callable[[], tuple[str, bool]],
                   now: datetime, seen: set[str]) -> dict[str, Any] | None:
        """The ledger row of one audience member (None for a repeated address: the first wins)."""
        r = m.recipient
        address = r.phone if row["channel"] == c.CHANNEL_SMS else r.email
        key = address or f"contact:{r.contact_id}"
        if key in seen:
            return None
        seen.add(key)
        status = S.MESSAGE_STATUS_QUEUED
        if not m.accepted:
            status = REJECT_STATUS.get(m.rejection, (S.MESSAGE_STATUS_FAILED,))[0]
        variant, held = assign() if m.accepted else ("", False)
        variables = variables_of(r)
        category, reason = (0, "") if m.accepted else (m.rejection, m.rejection_reason)
        try:
            shown = preview(row["channel"], content_of(row, variant), variables)
        except templating.TemplateError as exc:  # this recipient's values break the template
            shown = ""
            if m.accepted:
                status = S.MESSAGE_STATUS_FAILED
                category, reason = c.FAILURE_CATEGORY_CONTENT_REJECTED, str(exc)
                held = False
        return dict(
            variant=variant, held=held,
            id=message_id(row["id"], row["channel"], key), campaign_id=row["id"],
            workspace_id=row["workspace_id"], contact_id=r.contact_id,
            contact_name=templating.full_name(r.first_name, r.last_name),
            address=address or "", channel=row["channel"], status=status,
            status_rank=states.RANK[status], failure_category=category, error_description=reason,
            content_preview=shown, fields=variables, created_at=now, updated_at=now,
        )

    async def insert_rows(self, rows: list[dict[str, Any]]) -> int:
        """Insert the rows the ledger does not have yet; rows already there are left as they
        are (a resumed build, or a second replica after a lease ran out)."""
        async with self.store.engine.begin() as conn:
            have = {r[0] for r in await conn.execute(select(messages.c.id).where(
                messages.c.id.in_([r["id"] for r in rows])))}
            new = [r for r in rows if r["id"] not in have]
            if new:
                await conn.execute(insert_missing(conn, messages), new)
            if have:
                log.info("build resumed over existing ledger rows",
                         extra={"campaign_id": rows[0]["campaign_id"], "kept": len(have)})
        for r in new:
            MESSAGES_BUILT.labels(states.status_name(r["status"])).inc()
        return len(new)

    async def announce_built(self, row: Any) -> int:
        """Publish each built row's queued event (and its rejection), read back from the ledger
        page by page; held A/B rows are announced when the winner is promoted."""
        cid, after, n = row["id"], "", 0
        cols = (messages.c.id, messages.c.status, messages.c.failure_category,
                messages.c.error_description, messages.c.address, messages.c.variant,
                messages.c.created_at)
        while True:
            async with self.store.engine.connect() as conn:
                page = (await conn.execute(select(*cols).where(
                    messages.c.campaign_id == cid, messages.c.held.is_(False), messages.c.id > after)
                    .order_by(messages.c.id).limit(BUILD_CHUNK))).all()
            if not page:
                return n
            items: list[tuple[str, Any, str]] = []
            for m in page:
                base = dict(message_id=m.id, campaign_id=cid, workspace_id=row["workspace_id"],
                            channel=row["channel"], occurred_at=to_ts(aware(m.created_at)),
                            to=m.address, variant=m.variant)
                ev = e.MessageEvent(event_id=f"{m.id}:queued", kind=e.MESSAGE_EVENT_KIND_QUEUED,
                                    status=S.MESSAGE_STATUS_QUEUED, **base)
                items.append((states.message_subject(ev.kind), ev, ev.event_id))
                kind = BUILT_KIND.get(m.status)
                if kind is not None:
                    ev = e.MessageEvent(event_id=f"{m.id}:{states.kind_name(kind)}", kind=kind,
                                        status=m.status, failure_category=m.failure_category,
                                        error_description=m.error_description, **base)
                    items.append((states.message_subject(kind), ev, ev.event_id))
            await bus.publish_many(self.js, items)
            n += len(page)
            after = page[-1].id

    # --- assumed delivery --------------------------------------------------------------------
    async def sweep_assumed(self, now: datetime) -> int:
        """SMS SUBMITTED (in the ledger) for longer than assumed_after: publish
        ASSUMED_DELIVERED for them; the ledger consumer and stats apply it (a later receipt
        still moves the message to DELIVERED or FAILED). The ledger is only changed by the
        consumer, so a crash between query and publish loses nothing: the next sweep finds
        the same rows. Ids are deterministic, so a repeat is dropped. Cheap: only campaigns
        that may still have SMS with the carrier, through the (campaign_id, status) index."""
        cutoff = now - timedelta(seconds=self.assumed_after)
        cols = (messages.c.id, messages.c.attempt, messages.c.campaign_id, messages.c.workspace_id,
                messages.c.address, messages.c.variant, messages.c.route)
        published = 0
        for _ in range(SWEEP_PAGES):
            async with self.store.engine.connect() as conn:
                page = (await conn.execute(
                    select(*cols).select_from(messages.join(campaigns, campaigns.c.id == messages.c.campaign_id))
                    .where(campaigns.c.channel == c.CHANNEL_SMS,
                           or_(campaigns.c.status.in_(SWEPT),
                               and_(campaigns.c.status == lifecycle.DONE,
                                    campaigns.c.mode == pb.CAMPAIGN_MODE_TRIGGER)),
                           campaigns.c.started_at.is_not(None),
                           messages.c.status == S.MESSAGE_STATUS_SUBMITTED,
                           messages.c.channel == c.CHANNEL_SMS,
                           func.coalesce(messages.c.sent_at, messages.c.updated_at) < cutoff,
                           messages.c.id > self.sweep_cursor)
                    .order_by(messages.c.id).limit(SWEEP_PAGE))).all()
            items: list[tuple[str, Any, str]] = []
            for m in page:
                key = f"{m.id}:assumed:{m.attempt}"
                ev = e.MessageEvent(
                    event_id=key, kind=e.MESSAGE_EVENT_KIND_ASSUMED_DELIVERED,
                    status=S.MESSAGE_STATUS_ASSUMED_DELIVERED, message_id=m.id,
                    campaign_id=m.campaign_id, workspace_id=m.workspace_id, channel=c.CHANNEL_SMS,
                    attempt=m.attempt, occurred_at=to_ts(now), to=m.address, variant=m.variant,
                    route=m.route)
                items.append((states.message_subject(ev.kind), ev, key))
            if items:
                await bus.publish_many(self.js, items)
                ASSUMED.inc(len(items))
                published += len(items)
            if len(page) < SWEEP_PAGE:
                self.sweep_cursor = ""
                break
            self.sweep_cursor = page[-1].id
        if published:
            log.info("assumed delivery reported", extra={"messages": published,
                                                         "after_seconds": self.assumed_after})
        return published

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
                created_at=to_ts(aware(m["created_at"])), expires_at=expires)
            if row["channel"] == c.CHANNEL_SMS:
                job.sms.text = ct.get("text", "")
            else:
                job.email.subject = ct.get("subject", "")
                job.email.text = ct.get("text", "")
                job.email.html = ct.get("html", "")
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
            # Logged once per distinct error (as the Errors tab stores it), not on every tick.
            if await self.record_error(row, "dispatch", f"publishing jobs failed ({describe(exc)}); retrying"):
                log.warning("publishing jobs failed, retrying",
                            extra={"campaign_id": cid, "jobs": len(sent_ids), "error": describe(exc)})
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
