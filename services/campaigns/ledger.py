"""Ledger consumer: applies message events to the ledger of record, idempotently.

Status events move a row only forward (status_rank guard), so duplicates and late
events change nothing; counters (views, clicks, replies) count each event_id once.
One transaction per fetched batch (of up to TRANSACTION_EVENTS events) keeps SQLite fast
enough for the event rate.

A second durable consumer takes the SMPP gateway's unmatched receipts
(events.receipt.unmatched: its Redis map no longer knew the id, e.g. after Redis lost its
data) and matches them against the ledger, the durable record (`match_receipts`). A matched
receipt becomes the message's outcome event on the bus, which this ledger and the stats
service then apply like any other.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from nats.js import JetStreamContext
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncConnection

from services.campaigns import metrics, settings
from services.campaigns.receipt_match import match_receipts, receipt_event
from services.campaigns.repo import message_updates, replies_clicks
from services.campaigns.store import Store
from shared import bus, channels, eventbatch, states
from shared.consumer import ACK, NAK, TERM, BatchHandler, Consumer, Durable, Verdict
from shared.masking import mask_text
from shared.timeutil import Clock, from_ts

log = logging.getLogger("herald.campaigns.ledger")
S = c.MessageStatus
# Per-event code compares with c.MESSAGE_STATUS_* / e.MESSAGE_EVENT_KIND_* (module constants):
# each S.X or K.X is an enum wrapper lookup costing about a microsecond.
K = e.MessageEventKind

LEDGER_EVENTS = Counter("herald_campaigns_ledger_events_total",
                        "Message events seen by the ledger, by result (applied, stale, duplicate, "
                        "unknown, ignored).", ["result"])
COUNTERS = {K.MESSAGE_EVENT_KIND_OPENED: "views", K.MESSAGE_EVENT_KIND_CLICKED: "clicks",
            K.MESSAGE_EVENT_KIND_REPLIED: "replies"}
RECEIPTS = Counter("herald_campaigns_receipts_total",
                   "Unmatched SMPP receipts (events.receipt.unmatched) the ledger handled, by "
                   "result (credited, intermediate, settled).", ["result"])
RECEIPTS_UNMATCHED = Counter(
    "herald_campaigns_receipts_unmatched_total",
    "Receipts neither the SMPP gateway's map nor the ledger could credit to a message, by reason "
    "(unknown_id, address_mismatch, no_address, not_submitted, ambiguous).", ["reason"])
DURABLE = "campaigns-ledger"
SUBJECT = "events.message.>"
RECEIPT_SUBJECT = "events.receipt.unmatched"
REDELIVERY_DELAY = 1.0  # seconds before a batch that could not be applied comes back
# Events per ledger transaction: a fetch of batches may hold 100,000 events after a backlog,
# and SQLite has one writer (the build and the dispatcher wait while a transaction runs).
TRANSACTION_EVENTS = 2000
# Bus messages per fetch. Each may be a batch of up to HERALD_EVENT_BATCH_MAX events: 500 a
# fetch held 128,000 events in memory after a backlog (campaigns peaked at 411 MiB in a
# 1,000,000-SMS run, 205 MiB before batches); 64 hold at most 16,384.
FETCH_MESSAGES = 64


# A status that says the message got through: its error columns are those of the event.
GOOD = frozenset(states.SENT)


def was_sent(ev: e.MessageEvent, new: int) -> bool:
    """The carrier / MTA had the message: a submission, or a receipt or bounce about it (which
    may arrive before the submission's own event, whose late update is then stale)."""
    return (new in states.SENT or bool(ev.carrier_result)
            or ev.kind == e.MESSAGE_EVENT_KIND_BOUNCED)


def status_params(ev: e.MessageEvent, new: int, now: Any) -> dict[str, Any]:
    at = from_ts(ev.occurred_at) or now
    return {
        "b_good": 1 if new in GOOD else 0,
        "b_id": ev.message_id, "b_status": new,
        "b_carrier": ev.carrier_result, "b_code": ev.error_code, "b_desc": ev.error_description,
        "b_provider": ev.provider_message_id, "b_category": ev.failure_category, "b_route": ev.route,
        "b_attempt": ev.attempt,
        "b_sent_at": at if was_sent(ev, new) else None,
        "b_delivered_at": at if new == c.MESSAGE_STATUS_DELIVERED else None,
        "b_at": at,
    }


@functools.cache
def may_finish() -> frozenset[int]:
    """The statuses final for some channel (or FAILED): the only ones metrics.transitions counts."""
    return frozenset(states.FINAL | {S.MESSAGE_STATUS_FAILED}
                     | {st for sp in channels.specs() for st in sp.final_statuses})


async def apply_batch(conn: AsyncConnection, events: list[e.MessageEvent], now: Any,
                      outcomes: metrics.Tally[metrics.Outcome] | None = None) -> dict[str, int]:
    """Apply a batch in order; returns counts by result for the metrics. `outcomes`, when
    given, receives the rows' transitions to final statuses (counted once committed)."""
    results: dict[str, int] = {}
    status_rows: list[dict[str, Any]] = []

    def count(result: str, n: int = 1) -> None:
        results[result] = results.get(result, 0) + n

    async def flush(rows: list[dict[str, Any]]) -> None:
        if outcomes is not None:
            # Only messages an event of the batch may finish can count: their rows are read
            # (and replayed in order). On PostgreSQL every row is locked first, in id order,
            # so ledger replicas sharing the durable never lock each other's rows crosswise.
            counted = rows
            if conn.dialect.name != "postgresql":
                ids = {r["b_id"] for r in rows if r["b_status"] in may_finish()}
                counted = [r for r in rows if r["b_id"] in ids]
            if counted:
                metrics.transitions(
                    await message_updates.current_states(conn, (r["b_id"] for r in counted)),
                    counted, outcomes)
        moved = await message_updates.apply_statuses(conn, rows)
        if moved is not None:
            count("applied", moved)
            count("stale", len(rows) - moved)
        else:  # asyncpg's executemany reports no row counts
            count("status_batched", len(rows))

    if conn.dialect.name == "postgresql" and any(ev.kind in COUNTERS for ev in events):
        # A counter event splits the status updates into several statements: lock the whole
        # batch first, in id order as dispatch and other ledger replicas do (no crosswise hold).
        await message_updates.current_states(conn, (ev.message_id for ev in events if ev.message_id))
    for ev in events:
        if ev.kind in COUNTERS:
            # Counters are rare next to status events; keep them per event (de-dup by id).
            if status_rows:
                await flush(status_rows)
                status_rows = []
            if not ev.event_id or not await replies_clicks.first_time(conn, ev.event_id, now):
                count("duplicate")
                continue
            known = await message_updates.bump(conn, ev.message_id, COUNTERS[ev.kind])
            count("applied" if known else "unknown")
            at = from_ts(ev.occurred_at) or now
            if known and ev.kind == K.MESSAGE_EVENT_KIND_REPLIED:
                await replies_clicks.add_reply(conn, ev.event_id, ev.message_id, ev.campaign_id,
                                               ev.reply_from, ev.reply_text, at)
            elif known and ev.kind == K.MESSAGE_EVENT_KIND_CLICKED:
                await replies_clicks.add_click(conn, ev.event_id, ev.message_id, ev.campaign_id,
                                               ev.link_index, ev.url, at)
            continue
        new = states.KIND_STATUS.get(ev.kind)
        if new is None:
            log.warning("event kind without a status", extra={"kind": states.kind_name(ev.kind)})
            count("ignored")
            continue
        if new == c.MESSAGE_STATUS_QUEUED and not ev.attempt:
            # A build's "queued" (attempt 0: the current one) never moves a row, which is
            # created QUEUED: stale without asking the database.
            count("stale")
            continue
        status_rows.append(status_params(ev, new, now))
    if status_rows:
        await flush(status_rows)
    return results


class RateLimitedInfo:
    """At most one INFO line per key per interval (unmatched receipts come in floods after
    an outage); each line says how many were left out since the previous one."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def info(self, key: str, message: str, **extra: Any) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -self.every) < self.every:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        log.info(message, extra={**extra, "suppressed": self._suppressed.pop(key, 0)})


def cause(exc: BaseException) -> str:
    """An exception as a log field: its type and text (some, e.g. timeouts, have no text)."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Ledger:
    """Both durables on shared.consumer: each fetch is one verdict per bus message, which
    covers all of its events when it is a batch (ACK once applied, NAK(1 s) when the fetch
    could not be, TERM for an unparsable one)."""

    def __init__(self, store: Store, js: JetStreamContext, clock: Clock | None = None,
                 batch: int = FETCH_MESSAGES, durable: str = DURABLE) -> None:
        self.store = store
        self.js = js
        self.clock = clock or Clock()
        self.batch = batch
        self.durable = durable
        self._unmatched_log = RateLimitedInfo()

    @property
    def receipts_durable(self) -> str:
        return f"{self.durable}-receipts"

    def _consumer(self, durable: str, subject: str, handle: BatchHandler) -> Consumer:
        return Consumer(self.js, Durable(bus.EVENTS_STREAM, durable, subject,
                                         ack_wait=settings.LEDGER_ACK_WAIT.get_float(),
                                         max_ack_pending=20000, batch=self.batch),
                        handle, error_delay=REDELIVERY_DELAY)

    async def run(self, stop: asyncio.Event) -> None:
        """Both consumers until stop is set. One durable per subject: a JetStream consumer has
        a single filter subject on nats-server 2.9. Either one failing ends the other."""
        await bus.run_consumers({
            "ledger-messages": self._consumer(self.durable, SUBJECT, self.handle_messages).run(stop),
            "ledger-receipts": self._consumer(self.receipts_durable, RECEIPT_SUBJECT,
                                              self.handle_receipts).run(stop)})

    @staticmethod
    def _parse(msgs: list, read: Callable[[Any], list[Any]]) -> tuple[list[Verdict], list[tuple[int, Any]]]:
        """ACK for every message, TERM for the unparsable; the (index, event) of the others'
        events (a message may hold a batch of them: shared.eventbatch; its verdict covers all)."""
        verdicts: list[Verdict] = [ACK] * len(msgs)
        good = []
        for i, m in enumerate(msgs):
            try:
                good += [(i, ev) for ev in read(m)]
            except bus.PermanentError as exc:
                log.error("dropping unparsable event", extra={"subject": m.subject, "error": cause(exc)})
                verdicts[i] = TERM
        return verdicts, good

    def _redeliver(self, event: str, verdicts: list[Verdict], good: list[tuple[int, Any]],
                   exc: Exception) -> list[Verdict]:
        """The batch is not lost: every message of it is nak'ed (an idempotent apply makes a
        redelivery harmless)."""
        log.error(event, extra={"consumer": self.durable, "events": len(good), "error": cause(exc)},
                  exc_info=exc)
        for i, _ev in good:
            verdicts[i] = NAK(REDELIVERY_DELAY)
        return verdicts

    async def handle_messages(self, msgs: list) -> list[Verdict]:
        verdicts, good = self._parse(msgs, eventbatch.events_of)
        if not good:
            return verdicts
        events, now = [ev for _i, ev in good], self.clock.now()
        try:
            for start in range(0, len(events), TRANSACTION_EVENTS):
                outcomes: metrics.Tally[metrics.Outcome] = metrics.Tally()
                async with self.store.write() as conn:
                    results = await apply_batch(conn, events[start:start + TRANSACTION_EVENTS], now,
                                                outcomes)
                # Counted once committed. If a later transaction fails, the whole fetch comes
                # back: these events then change nothing (forward only, counters once per id).
                for result, n in results.items():
                    LEDGER_EVENTS.labels(result).inc(n)
                metrics.record(outcomes)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return self._redeliver("ledger batch failed", verdicts, good, exc)
        return verdicts

    async def handle_receipts(self, msgs: list) -> list[Verdict]:
        verdicts, good = self._parse(msgs, lambda m: [bus.parse(m, e.UnmatchedReceipt)])
        if not good:
            return verdicts
        try:
            async with self.store.read() as conn:
                matches = await match_receipts(conn, [r for _i, r in good])
            now = self.clock.now()
            # Acked only once the outcome events are stored on the bus.
            await bus.publish_many(self.js, [receipt_event(m, now) for m in matches if m.row is not None])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return self._redeliver("ledger receipt batch failed", verdicts, good, exc)
        for m in matches:
            if m.row is not None or m.reason in ("intermediate", "settled"):
                RECEIPTS.labels(m.reason).inc()
                continue
            RECEIPTS_UNMATCHED.labels(m.reason).inc()
            r = m.receipt
            self._unmatched_log.info(
                m.reason, "receipt matched no ledger message", reason=m.reason, route=r.route,
                provider_ids=",".join(r.provider_ids), stat=r.stat, source=mask_text(r.source_address))
        return verdicts
