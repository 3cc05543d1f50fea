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
from sqlalchemy import func, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from services.campaigns.schema import messages, processed_events
from services.campaigns.store import Store
from shared import bus, states
from shared.timeutil import Clock, from_ts

log = logging.getLogger("herald.campaigns.ledger")
S = c.MessageStatus
K = e.MessageEventKind

LEDGER_EVENTS = Counter("herald_campaigns_ledger_events_total",
                        "Message events applied to the ledger, by kind and result.", ["kind", "result"])
COUNTERS = {K.MESSAGE_EVENT_KIND_OPENED: "views", K.MESSAGE_EVENT_KIND_CLICKED: "clicks",
            K.MESSAGE_EVENT_KIND_REPLIED: "replies"}
DURABLE = "campaigns-ledger"


async def first_time(conn: AsyncConnection, event_id: str, now: Any) -> bool:
    ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(processed_events)
    res = await conn.execute(ins.values(event_id=event_id, at=now).on_conflict_do_nothing())
    return res.rowcount == 1


async def apply(conn: AsyncConnection, ev: e.MessageEvent, now: Any) -> str:
    kind_label = states.kind_name(ev.kind)
    if ev.kind in COUNTERS:
        if not ev.event_id or not await first_time(conn, ev.event_id, now):
            return "duplicate"
        col = messages.c[COUNTERS[ev.kind]]
        res = await conn.execute(update(messages).where(messages.c.id == ev.message_id)
                                 .values({col: col + 1}))
        return "applied" if res.rowcount else "unknown"
    new = states.KIND_STATUS.get(ev.kind)
    if new is None:
        log.warning("event kind without a status", extra={"kind": kind_label})
        return "ignored"
    at = from_ts(ev.occurred_at) or now
    values: dict[str, Any] = {"status": new, "status_rank": states.RANK[new]}
    for field in ("carrier_result", "error_code", "error_description", "provider_message_id"):
        if getattr(ev, field):
            values[field] = getattr(ev, field)
    if ev.failure_category:
        values["failure_category"] = ev.failure_category
    if ev.attempt:
        values["attempt"] = ev.attempt
    if new in states.SENT:
        values["sent_at"] = func.coalesce(messages.c.sent_at, at)
    if new == S.MESSAGE_STATUS_DELIVERED:
        values["delivered_at"] = at
    res = await conn.execute(update(messages).where(
        messages.c.id == ev.message_id, messages.c.status_rank < states.RANK[new]).values(values))
    return "applied" if res.rowcount else "stale"


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
                results = []
                async with self.store.engine.begin() as conn:
                    now = self.clock.now()
                    for _m, ev in good:
                        results.append((ev.kind, await apply(conn, ev, now)))
            except Exception:
                log.exception("ledger batch failed; redelivering", extra={"events": len(good)})
                for m, _ev in good:
                    await m.nak(delay=1.0)
                continue
            for kind, result in results:
                LEDGER_EVENTS.labels(states.kind_name(kind), result).inc()
            await asyncio.gather(*(m.ack() for m, _ in good))
        await sub.unsubscribe()
