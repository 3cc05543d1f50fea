"""Message events in batches (shared.eventbatch) on the real NATS, Redis and both ledger
backends: a producer's events go as one stream message per kind per batch, and the campaigns
ledger and the stats consumer apply every event of them; a fetch mixing single events (older
producers) and batches is applied whole; a corrupt batch is terminated and logged, and
nothing else is lost."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from nats.js.api import ConsumerConfig, DeliverPolicy
from sqlalchemy import insert, select

from gateways.smpp import events as smpp_events
from gateways.smpp.store import Mapping
from services.campaigns import ledger as ledger_module
from services.campaigns.ledger import Ledger
from services.campaigns.schema import messages
from services.campaigns.store import Store
from services.stats.aggregator import Aggregator
from services.stats.consumer import Consumer as StatsConsumer
from shared import bus, eventbatch, jsfast, states
from shared.adapters import nats_internals
from tests.integration.test_campaigns_ledger import engine  # noqa: F401 - both ledger backends

S = c.MessageStatus
K = e.MessageEventKind


class Seen:
    """Which fetches each consumer handled: per fetch, whether each message was a batch."""

    def __init__(self) -> None:
        self.fetches: list[list[bool]] = []

    def note(self, msgs: list[Any]) -> None:
        self.fetches.append([eventbatch.is_batch(m) for m in msgs])


class RecordingLedger(Ledger):
    seen: Seen

    async def handle_messages(self, msgs: list) -> list:  # type: ignore[override]
        self.seen.note(msgs)
        return await super().handle_messages(msgs)


class RecordingStats(StatsConsumer):
    seen: Seen

    async def handle(self, msgs: list) -> list:  # type: ignore[override]
        self.seen.note(msgs)
        return await super().handle(msgs)


class Pipeline:
    """The campaigns ledger and the stats consumer, each on a durable of its own that starts
    at the end of the stream (only this test's events are delivered to them)."""

    def __init__(self, eng: Any, js: Any, redis_client: Any) -> None:
        tag = uuid.uuid4().hex[:8]
        self.js, self.engine = js, eng
        self.agg = Aggregator(redis_client, f"eb{tag}:", message_ttl=600, event_ttl=600,
                              daily_ttl=600)
        self.ledger = RecordingLedger(Store(eng), js, durable=f"ledger-eb-{tag}", batch=100)
        self.ledger.seen = Seen()
        self.stats = RecordingStats(self.agg, js, durable=f"stats-eb-{tag}", batch=100)
        self.stats.seen = Seen()
        self.durables = [self.ledger.durable, self.stats.durable]
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for name in self.durables:
            await self.js.add_consumer(bus.EVENTS_STREAM, ConsumerConfig(
                durable_name=name, filter_subject="events.message.>",
                deliver_policy=DeliverPolicy.NEW, ack_wait=30, max_ack_pending=20000))

    def run(self) -> None:
        self.tasks = [asyncio.create_task(self.ledger.run(self.stop)),
                      asyncio.create_task(self.stats.run_messages(self.stop))]

    async def drained(self) -> bool:
        for name in self.durables:
            info = await self.js.consumer_info(bus.EVENTS_STREAM, name)
            if info.num_pending or info.num_ack_pending:
                return False
        return True

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), 10)
        for name in (*self.durables, self.ledger.receipts_durable):
            try:
                await self.js.delete_consumer(bus.EVENTS_STREAM, name)
            except Exception:  # noqa: S112 - the receipts durable may not exist yet
                continue

    async def statuses(self, ids: list[str]) -> dict[str, int]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(messages.c.id, messages.c.status)
                                      .where(messages.c.id.in_(ids)))
            return {r.id: r.status for r in rows}


async def until(check: Any, what: str, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def insert_sending(eng: Any, cid: str, ws: str, n: int) -> list[Mapping]:
    now = datetime.now(UTC)
    idents = [Mapping(message_id=str(uuid.uuid4()), campaign_id=cid, workspace_id=ws, attempt=1,
                      smsc_id=f"s{i}", to=f"+4477009{i:05d}", route="r1") for i in range(n)]
    async with eng.begin() as conn:
        await conn.execute(insert(messages), [dict(
            id=m.message_id, campaign_id=cid, workspace_id=ws, address=m.to,
            channel=c.CHANNEL_SMS, status=S.MESSAGE_STATUS_SENDING,
            status_rank=states.RANK[S.MESSAGE_STATUS_SENDING], fields={}, created_at=now)
            for m in idents])
    return idents


@asynccontextmanager
async def running(eng: Any, js: Any, redis_client: Any,
                  n: int) -> AsyncIterator[tuple[Pipeline, jsfast.Publisher, str, str, list[Mapping]]]:
    """n SENDING messages of a new campaign, the consumers' durables and a publisher."""
    cid, ws = str(uuid.uuid4()), f"ws-{uuid.uuid4().hex[:8]}"
    idents = await insert_sending(eng, cid, ws, n)
    p = Pipeline(eng, js, redis_client)
    await p.start()
    pub = await jsfast.Publisher(nats_internals.connection_of(js)).start()
    try:
        yield p, pub, cid, ws, idents
    finally:
        await pub.close()
        await p.close()


async def stream_messages(js: Any) -> int:
    return int((await js.stream_info(bus.EVENTS_STREAM)).state.messages)


async def test_a_producers_batch_is_few_stream_messages_and_every_event_is_applied(
        engine, js, redis_client, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    # a fetch's events in several ledger transactions (600 events here)
    monkeypatch.setattr(ledger_module, "TRANSACTION_EVENTS", 100)
    async with running(engine, js, redis_client, 300) as (p, pub, cid, ws, idents):
        before = await stream_messages(js)
        await smpp_events.publish_many(pub, [
            smpp_events.message(K.MESSAGE_EVENT_KIND_SUBMITTED, m, f"{m.message_id}:submitted:1",
                                provider_message_id=m.smsc_id) for m in idents])
        outcomes = [smpp_events.message(
            K.MESSAGE_EVENT_KIND_DELIVERED if i % 2 else K.MESSAGE_EVENT_KIND_FAILED, m,
            f"{m.message_id}:dlr:1", carrier_result="DELIVRD" if i % 2 else "UNDELIV")
            for i, m in enumerate(idents)]
        await smpp_events.publish_many(pub, outcomes)
        # 300 submitted: 256 + 44; 150 delivered and 150 failed: one batch each
        assert await stream_messages(js) - before == 4
        await smpp_events.publish_many(pub, outcomes)  # a retry: the same batches, de-duplicated
        assert await stream_messages(js) - before == 4
        p.run()
        await until(p.drained, "both consumers to settle every batch")
        statuses = await p.statuses([m.message_id for m in idents])
        assert sorted(statuses.values()) == sorted(
            S.MESSAGE_STATUS_DELIVERED if i % 2 else S.MESSAGE_STATUS_FAILED for i in range(300))
        counters, owner = await p.agg.campaign(cid)
        assert owner == ws
        assert (counters["total"], counters["sent"], counters["delivered"], counters["failed"]) == \
            (300, 300, 150, 150)
        assert all(all(f) for f in p.ledger.seen.fetches + p.stats.seen.fetches)


async def test_a_fetch_mixing_single_events_and_batches_is_applied_whole(
        engine, js, redis_client,  # noqa: F811 - the imported fixture
        caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.ERROR, logger="herald")
    async with running(engine, js, redis_client, 12) as (p, pub, cid, _ws, idents):
        def delivered(m: Mapping) -> smpp_events.Outgoing:
            return smpp_events.message(K.MESSAGE_EVENT_KIND_DELIVERED, m, f"{m.message_id}:dlr:1",
                                       carrier_result="DELIVRD")

        for m in idents[:3]:  # one event per bus message, as a release before batches sends them
            subject, ev, key = delivered(m)
            await bus.publish(js, subject, ev, key)
        await smpp_events.publish_many(pub, [delivered(m) for m in idents[3:8]])
        corrupt = b"\x0a\xff\xff\xff\x0f\x01"  # a length past the end
        await js.publish("events.message.delivered", corrupt, headers={
            "Nats-Msg-Id": f"{cid}-corrupt", "Herald-Payload": "MessageEventBatch"})
        subject, ev, key = delivered(idents[8])
        await bus.publish(js, subject, ev, key)
        await smpp_events.publish_many(pub, [delivered(m) for m in idents[9:]])
        p.run()
        await until(p.drained, "both consumers to settle every message")
        statuses = await p.statuses([m.message_id for m in idents])
        assert set(statuses.values()) == {S.MESSAGE_STATUS_DELIVERED} and len(statuses) == 12
        counters, _owner = await p.agg.campaign(cid)
        assert (counters["total"], counters["delivered"]) == (12, 12)
        for seen in (p.ledger.seen, p.stats.seen):
            assert [True, False] == sorted({b for f in seen.fetches for b in f}, reverse=True)
            assert sum(len(f) for f in seen.fetches) == 7  # 4 single, 2 batches, 1 corrupt
            assert any(True in f and False in f for f in seen.fetches)  # mixed in one fetch
        for name in p.durables:
            info = await js.consumer_info(bus.EVENTS_STREAM, name)
            assert (info.num_pending, info.num_ack_pending, info.num_redelivered) == (0, 0, 0)
        dropped = [r for r in caplog.records if r.getMessage() == "dropping unparsable event"]
        assert len(dropped) == 2  # once by each consumer
        assert all("not a MessageEventBatch" in str(getattr(r, "error", "")) for r in dropped)
