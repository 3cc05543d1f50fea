"""The stats consumers in-process: garbage is terminated, unknown kinds are acked and
ignored, campaign events record the campaign's workspace, and nothing is left pending on
either durable; an idle consumer logs nothing, a failing fetch logs its cause (the fetch
loop is shared.consumer's: tests/integration/test_shared_consumer.py covers it further)."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
from herald.v1 import events_pb2 as e
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.stats.aggregator import Aggregator
from services.stats.consumer import Consumer
from shared import bus
from shared import consumer as shared_consumer

K = e.MessageEventKind


async def test_consumer_acks_everything_and_applies_in_order(js, redis_client) -> None:  # type: ignore[no-untyped-def]
    agg = Aggregator(redis_client, f"cn{uuid.uuid4().hex[:8]}:", message_ttl=600,
                     event_ttl=600, daily_ttl=600)
    cid, durable = f"cmp-{uuid.uuid4().hex[:8]}", f"stats-cn-{uuid.uuid4().hex[:8]}"
    await js.publish("events.message.queued", b"\xff not a protobuf",
                     headers={"Nats-Msg-Id": f"{cid}-garbage"})
    future = e.MessageEvent(event_id=f"{cid}-f", kind=99, message_id=f"{cid}-m1", campaign_id=cid)
    await bus.publish(js, "events.message.future", future, future.event_id)
    for i, kind in enumerate((K.MESSAGE_EVENT_KIND_SUBMITTED, K.MESSAGE_EVENT_KIND_DELIVERED,
                              K.MESSAGE_EVENT_KIND_SUBMITTED)):
        ev = e.MessageEvent(event_id=f"{cid}-{i}", kind=kind, message_id=f"{cid}-m1",
                            campaign_id=cid, workspace_id="ws-cn")
        await bus.publish(js, "events.message.x", ev, ev.event_id)

    stop = asyncio.Event()
    task = asyncio.create_task(Consumer(agg, js, durable=durable, batch=50).run(stop))
    try:
        for _ in range(200):
            await asyncio.sleep(0.05)
            info = await js.consumer_info(bus.EVENTS_STREAM, durable)
            if info.num_pending == 0 and info.num_ack_pending == 0 and \
                    (await agg.campaign(cid))[0]["delivered"]:
                break
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await js.delete_consumer(bus.EVENTS_STREAM, durable)
        await js.delete_consumer(bus.EVENTS_STREAM, f"{durable}-campaigns")
    assert (info.num_pending, info.num_ack_pending, info.num_redelivered) == (0, 0, 0)
    counters, owner = await agg.campaign(cid)
    assert owner == "ws-cn"
    assert (counters["total"], counters["sent"], counters["delivered"], counters["submitted"]) == (1, 1, 1, 0)


async def test_campaign_events_record_the_owner(js, redis_client) -> None:  # type: ignore[no-untyped-def]
    agg = Aggregator(redis_client, f"cc{uuid.uuid4().hex[:8]}:", message_ttl=600,
                     event_ttl=600, daily_ttl=600)
    cid, other, durable = str(uuid.uuid4()), str(uuid.uuid4()), f"stats-cc-{uuid.uuid4().hex[:8]}"
    await js.publish("events.campaign.status_changed", b"\xff not a protobuf",
                     headers={"Nats-Msg-Id": f"{cid}-garbage"})
    for i, (campaign, workspace) in enumerate(((cid, "ws-cc"), (cid, "ws-later"), (other, ""))):
        ev = e.CampaignEvent(event_id=f"{cid}-{i}", kind=e.CAMPAIGN_EVENT_KIND_STATUS_CHANGED,
                             campaign_id=campaign, workspace_id=workspace, status="SENDING")
        await bus.publish(js, "events.campaign.status_changed", ev, ev.event_id)
    consumer = Consumer(agg, js, durable=durable, batch=50)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        for _ in range(200):
            await asyncio.sleep(0.05)
            info = await js.consumer_info(bus.EVENTS_STREAM, consumer.campaigns_durable)
            if info.num_pending == 0 and info.num_ack_pending == 0 and await agg.owner(cid):
                break
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        await js.delete_consumer(bus.EVENTS_STREAM, durable)
        await js.delete_consumer(bus.EVENTS_STREAM, consumer.campaigns_durable)
    assert (info.num_pending, info.num_ack_pending) == (0, 0)
    assert await agg.owner(cid) == "ws-cc"  # the first record wins
    assert await agg.owner(other) == ""  # an event without a workspace records nothing


async def test_idle_fetches_log_nothing(js, redis_client, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    """An empty consumer's fetches time out: normal, so no "fetch failed" line (an earlier
    version logged each idle timeout as 'fetch failed: ')."""
    agg = Aggregator(redis_client, f"ci{uuid.uuid4().hex[:8]}:", message_ttl=600,
                     event_ttl=600, daily_ttl=600)
    durable = f"stats-ci-{uuid.uuid4().hex[:8]}"
    # Start at the end of the stream: nothing to deliver, every fetch times out.
    await js.add_consumer(bus.EVENTS_STREAM, ConsumerConfig(
        durable_name=durable, filter_subject="events.message.>", deliver_policy=DeliverPolicy.NEW,
        ack_wait=30, max_ack_pending=20000))
    stop = asyncio.Event()
    caplog.set_level(logging.INFO, logger="herald")
    fetches = [0]
    real = shared_consumer.Consumer.fetch

    async def counted(self, sub, size):  # type: ignore[no-untyped-def]
        fetches[0] += 1
        return await real(self, sub, size)

    task = asyncio.create_task(Consumer(agg, js, durable=durable, batch=50).run_messages(stop))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shared_consumer.Consumer, "fetch", counted)
        try:
            for _ in range(100):
                await asyncio.sleep(0.05)
                if fetches[0] >= 4:  # three idle fetches done at least (0.5 s each)
                    break
        finally:
            stop.set()
            await asyncio.wait_for(task, 5)
            await js.delete_consumer(bus.EVENTS_STREAM, durable)
    assert fetches[0] >= 4
    assert [r.getMessage() for r in caplog.records if r.name.startswith("herald")
            and not r.name.startswith("herald.bus.lag")] == []


async def test_fetch_errors_are_logged_with_their_cause(nats_url: str, redis_client,  # type: ignore[no-untyped-def]
                                                        caplog: pytest.LogCaptureFixture) -> None:
    agg = Aggregator(redis_client, f"ce{uuid.uuid4().hex[:8]}:", message_ttl=600,
                     event_ttl=600, daily_ttl=600)
    durable = f"stats-ce-{uuid.uuid4().hex[:8]}"
    nc = await bus.connect(nats_url)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    await js.add_consumer(bus.EVENTS_STREAM, ConsumerConfig(
        durable_name=durable, filter_subject="events.message.>", deliver_policy=DeliverPolicy.NEW))
    caplog.set_level(logging.INFO, logger="herald")
    stop = asyncio.Event()
    task = asyncio.create_task(Consumer(agg, js, durable=durable).run_messages(stop))
    await asyncio.sleep(0.3)
    await js.delete_consumer(bus.EVENTS_STREAM, durable)
    await nc.close()  # the connection is gone under the consumer

    def logged() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "herald.consumer"]

    # A fetch already waiting when the connection closed ends as a plain timeout; the next
    # one finds the connection closed and says so (how soon depends on the fetch timeout).
    for _ in range(100):
        if logged():
            break
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.wait_for(task, 5)
    recs = logged()
    assert recs, "a failing fetch is logged"
    rec = recs[0]
    assert rec.getMessage() == "fetch failed" and rec.levelno == logging.WARNING
    assert rec.consumer == durable  # type: ignore[attr-defined]
    assert rec.error_type and rec.error  # type: ignore[attr-defined]
