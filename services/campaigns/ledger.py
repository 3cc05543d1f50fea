"""Ledger consumer: applies message events to the ledger of record, idempotently.

Status events move a row only forward (status_rank guard), so duplicates and late
events change nothing; counters (views, clicks, replies) count each event_id once.
One transaction per fetched batch keeps SQLite fast enough for the event rate.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig
from prometheus_client import Counter
from sqlalchemy import DateTime, bindparam, case, func, insert, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from services.campaigns.schema import clicks, messages, processed_events, replies
from services.campaigns.store import Store
from shared import bus, states
from shared.timeutil import Clock, from_ts

log = logging.getLogger("herald.campaigns.ledger")
S = c.MessageStatus
K = e.MessageEventKind

LEDGER_EVENTS = Counter("herald_campaigns_ledger_events_total",
                        "Message events seen by the ledger, by result (applied, stale, duplicate, "
                        "unknown, ignored).", ["result"])
COUNTERS = {K.MESSAGE_EVENT_KIND_OPENED: "views", K.MESSAGE_EVENT_KIND_CLICKED: "clicks",
            K.MESSAGE_EVENT_KIND_REPLIED: "replies"}
DURABLE = "campaigns-ledger"


async def first_time(conn: AsyncConnection, event_id: str, now: Any) -> bool:
    ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(processed_events)
    res = await conn.execute(ins.values(event_id=event_id, at=now).on_conflict_do_nothing())
    return res.rowcount == 1


def _keep_or(col: Any, param: str) -> Any:
    """Set the column from the event only when the event carries a value."""
    return case((bindparam(param) == "", col), else_=bindparam(param))


def _error_col(col: Any, param: str, empty: Any = "") -> Any:
    """An error column: replaced by a success (b_good: a deferred-then-accepted email must not
    keep its 451 text), else set from the event only when the event carries a value."""
    return case((bindparam("b_good") == 1, bindparam(param)), (bindparam(param) == empty, col),
                else_=bindparam(param))


# A status that says the message got through: its error columns are those of the event.
GOOD = frozenset(states.SENT)


# One statement for every status event, run as executemany over a whole batch: a row
# moves only forwards (status_rank guard). Per-statement execution cost ~1 ms of CPU
# each through aiosqlite, which made the ledger the pipeline's bottleneck.
STATUS_UPDATE = (
    update(messages)
    .where(
        messages.c.id == bindparam("b_id"),
        # A retry (RetryMessages) bumps attempt: events of older attempts are stale, and
        # attempt 0 (not said) counts as the current one.
        or_(bindparam("b_attempt") == 0, messages.c.attempt <= bindparam("b_attempt")),
        or_(messages.c.status_rank < bindparam("b_rank"), messages.c.attempt < bindparam("b_attempt")),
    )
    .values(
        status=bindparam("b_status"),
        status_rank=bindparam("b_rank"),
        carrier_result=_keep_or(messages.c.carrier_result, "b_carrier"),
        error_code=_error_col(messages.c.error_code, "b_code"),
        error_description=_error_col(messages.c.error_description, "b_desc"),
        provider_message_id=_keep_or(messages.c.provider_message_id, "b_provider"),
        route=_keep_or(messages.c.route, "b_route"),
        failure_category=_error_col(messages.c.failure_category, "b_category", 0),
        attempt=case((bindparam("b_attempt") == 0, messages.c.attempt), else_=bindparam("b_attempt")),
        sent_at=func.coalesce(messages.c.sent_at, bindparam("b_sent_at", type_=DateTime(timezone=True))),
        delivered_at=func.coalesce(bindparam("b_delivered_at", type_=DateTime(timezone=True)),
                                   messages.c.delivered_at),
        updated_at=bindparam("b_at", type_=DateTime(timezone=True)),
    )
)


def was_sent(ev: e.MessageEvent, new: int) -> bool:
    """The carrier / MTA had the message: a submission, or a receipt or bounce about it (which
    may arrive before the submission's own event, whose late update is then stale)."""
    return (new in states.SENT or bool(ev.carrier_result)
            or ev.kind == K.MESSAGE_EVENT_KIND_BOUNCED)


def status_params(ev: e.MessageEvent, new: int, now: Any) -> dict[str, Any]:
    at = from_ts(ev.occurred_at) or now
    return {
        "b_good": 1 if new in GOOD else 0,
        "b_id": ev.message_id, "b_rank": states.RANK[new], "b_status": new,
        "b_carrier": ev.carrier_result, "b_code": ev.error_code, "b_desc": ev.error_description,
        "b_provider": ev.provider_message_id, "b_category": ev.failure_category, "b_route": ev.route,
        "b_attempt": ev.attempt,
        "b_sent_at": at if was_sent(ev, new) else None,
        "b_delivered_at": at if new == S.MESSAGE_STATUS_DELIVERED else None,
        "b_at": at,
    }


async def apply_batch(conn: AsyncConnection, events: list[e.MessageEvent], now: Any) -> dict[str, int]:
    """Apply a batch in order; returns counts by result for the metrics."""
    results: dict[str, int] = {}
    status_rows: list[dict[str, Any]] = []

    def count(result: str, n: int = 1) -> None:
        results[result] = results.get(result, 0) + n

    async def flush(rows: list[dict[str, Any]]) -> None:
        res = await conn.execute(STATUS_UPDATE, rows)
        if conn.dialect.supports_sane_multi_rowcount:
            count("applied", res.rowcount)
            count("stale", len(rows) - res.rowcount)
        else:  # asyncpg's executemany reports no row counts
            count("status_batched", len(rows))

    for ev in events:
        if ev.kind in COUNTERS:
            # Counters are rare next to status events; keep them per event (de-dup by id).
            if status_rows:
                await flush(status_rows)
                status_rows = []
            if not ev.event_id or not await first_time(conn, ev.event_id, now):
                count("duplicate")
                continue
            col = messages.c[COUNTERS[ev.kind]]
            res = await conn.execute(update(messages).where(messages.c.id == ev.message_id)
                                     .values({col: col + 1}))
            count("applied" if res.rowcount else "unknown")
            at = from_ts(ev.occurred_at) or now
            if res.rowcount and ev.kind == K.MESSAGE_EVENT_KIND_REPLIED:
                await conn.execute(insert(replies).values(
                    event_id=ev.event_id, message_id=ev.message_id, campaign_id=ev.campaign_id,
                    from_address=ev.reply_from, text=ev.reply_text, at=at))
            elif res.rowcount and ev.kind == K.MESSAGE_EVENT_KIND_CLICKED:
                await conn.execute(insert(clicks).values(
                    event_id=ev.event_id, message_id=ev.message_id, campaign_id=ev.campaign_id,
                    link_index=ev.link_index, url=ev.url, at=at))
            continue
        new = states.KIND_STATUS.get(ev.kind)
        if new is None:
            log.warning("event kind without a status", extra={"kind": states.kind_name(ev.kind)})
            count("ignored")
            continue
        status_rows.append(status_params(ev, new, now))
    if status_rows:
        await flush(status_rows)
    return results


class Ledger:
    def __init__(self, store: Store, js: JetStreamContext, clock: Clock | None = None,
                 batch: int = 500) -> None:
        self.store = store
        self.js = js
        self.clock = clock or Clock()
        self.batch = batch

    async def run(self, stop: asyncio.Event) -> None:
        sub = await self.js.pull_subscribe(
            "events.message.>", durable=DURABLE, stream=bus.EVENTS_STREAM,
            config=ConsumerConfig(durable_name=DURABLE, filter_subject="events.message.>",
                                  ack_wait=60, max_ack_pending=20000))
        while not stop.is_set():
            try:
                msgs = await sub.fetch(self.batch, timeout=0.5)
            except (NatsTimeout, TimeoutError):  # idle consumer
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("fetch failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            good = []
            for m in msgs:
                try:
                    good.append((m, bus.parse(m, e.MessageEvent)))
                except bus.PermanentError as exc:
                    log.error("dropping unparsable event", extra={"reason": str(exc)})
                    await m.term()
            try:
                async with self.store.engine.begin() as conn:
                    results = await apply_batch(conn, [ev for _m, ev in good], self.clock.now())
            except Exception:
                log.exception("ledger batch failed; redelivering", extra={"events": len(good)})
                for m, _ev in good:
                    await m.nak(delay=1.0)
                continue
            for result, n in results.items():
                LEDGER_EVENTS.labels(result).inc(n)
            await asyncio.gather(*(m.ack() for m, _ in good))
        await sub.unsubscribe()
