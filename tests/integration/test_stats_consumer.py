"""The stats consumers in-process: garbage is terminated, unknown kinds are acked and
ignored, campaign events record the campaign's workspace, and nothing is left pending on
either durable."""

from __future__ import annotations

import asyncio
import uuid

from herald.v1 import events_pb2 as e

from services.stats.aggregator import Aggregator
from services.stats.consumer import Consumer
from shared import bus

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
