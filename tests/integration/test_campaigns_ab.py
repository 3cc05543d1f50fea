"""A/B variants: the test cell is split by percentage, the rest is held until the winner is
promoted; jobs carry each variant's content; stats report the arms side by side."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import grpc
import pytest
from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import ConsumerConfig

from services.stats.aggregator import Aggregator
from shared import bus
from shared.errors import field_violations
from tests.integration.campaigns_harness import Harness, sms

WS = (("x-herald-workspace", "wab"),)


def ab(n: int, test_percent: int) -> pb.CreateCampaignRequest:
    req = sms(n, auto_start=True, test_percent=test_percent, variants=[
        pb.Variant(name="A", split_percent=50, content=pb.Content(text="Offer A: 10% off")),
        pb.Variant(name="B", split_percent=50, content=pb.Content(text="Offer B: free delivery"))])
    return req


async def jobs_of(h: Harness, campaign_id: str) -> list[e.MessageJob]:
    """Drain jobs.sms on the private NATS and keep this campaign's (a test consumer)."""
    js = h.scheduler.js
    sub = await js.pull_subscribe("jobs.sms", durable="ab-test", stream=bus.JOBS_STREAM,
                                  config=ConsumerConfig(durable_name="ab-test", filter_subject="jobs.sms"))
    out = []
    try:
        while True:
            try:
                msgs = await sub.fetch(500, timeout=0.5)
            except (NatsTimeout, TimeoutError):
                break
            for m in msgs:
                job = e.MessageJob()
                job.ParseFromString(m.data)
                if job.campaign_id == campaign_id:
                    out.append(job)
                await m.ack()
    finally:
        await js.delete_consumer(bus.JOBS_STREAM, "ab-test")
    return out


async def test_ab_split_hold_and_promote(h: Harness) -> None:
    cp = await h.stub.CreateCampaign(ab(100, 20), metadata=WS)
    await h.stub.ApproveCampaign(pb.CampaignActionRequest(id=cp.id), metadata=WS)
    await h.ticks(1)
    got = await h.stub.GetCampaign(pb.GetCampaignRequest(id=cp.id), metadata=WS)
    assert got.held == 80 and [v.name for v in got.variants] == ["A", "B"]
    jobs = await jobs_of(h, cp.id)
    assert Counter((j.variant, j.sms.text) for j in jobs) == {
        ("A", "Offer A: 10% off"): 10, ("B", "Offer B: free delivery"): 10}
    assert got.status == pb.CAMPAIGN_STATUS_SENDING
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await h.stub.PromoteVariant(pb.PromoteVariantRequest(campaign_id=cp.id, variant="C"), metadata=WS)
    assert "variant" in field_violations(err.value)
    promoted = await h.stub.PromoteVariant(pb.PromoteVariantRequest(
        campaign_id=cp.id, variant="B", request_id="p-1"), metadata=WS)
    assert promoted.winner == "B"
    replay = await h.stub.PromoteVariant(pb.PromoteVariantRequest(
        campaign_id=cp.id, variant="B", request_id="p-1"), metadata=WS)
    assert replay == promoted  # the first answer, not "already won"
    await h.ticks(1)
    rest = await jobs_of(h, cp.id)
    assert Counter((j.variant, j.sms.text) for j in rest) == {("B:rollout", "Offer B: free delivery"): 80}
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await h.stub.PromoteVariant(pb.PromoteVariantRequest(campaign_id=cp.id, variant="A"), metadata=WS)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_variant_validation(h: Harness) -> None:
    bad = sms(3, variants=[pb.Variant(name="A", split_percent=60, content=pb.Content(text="x")),
                           pb.Variant(name="A", split_percent=30)])
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await h.stub.CreateCampaign(bad, metadata=WS)
    fields = field_violations(err.value)
    assert "campaign.variants" in fields and "campaign.variants[1].content.text" in fields


async def test_stats_report_arms_side_by_side(redis_client) -> None:  # type: ignore[no-untyped-def]
    agg = Aggregator(redis_client, "t-ab:", message_ttl=60, event_ttl=60, daily_ttl=60)
    now = datetime.now(UTC)
    evs = []
    for i, (variant, outcome) in enumerate([("A", "delivered"), ("A", "failed"), ("B", "delivered"),
                                            ("B", "delivered")]):
        base = dict(message_id=f"ab-{i}", campaign_id="cab", workspace_id="w", variant=variant,
                    channel=c.CHANNEL_SMS)
        evs.append(e.MessageEvent(kind=e.MESSAGE_EVENT_KIND_QUEUED, status=c.MESSAGE_STATUS_QUEUED, **base))
        evs.append(e.MessageEvent(kind=e.MESSAGE_EVENT_KIND_SUBMITTED, status=c.MESSAGE_STATUS_SUBMITTED, **base))
        kind = e.MESSAGE_EVENT_KIND_DELIVERED if outcome == "delivered" else e.MESSAGE_EVENT_KIND_FAILED
        evs.append(e.MessageEvent(kind=kind, **base))
    evs.append(e.MessageEvent(kind=e.MESSAGE_EVENT_KIND_REPLIED, event_id="rep-1", message_id="ab-2",
                              campaign_id="cab", variant="B"))
    await agg.apply_batch(evs, now)
    arms = await agg.variants("cab")
    assert (arms["A"]["sent"], arms["A"]["delivered"], arms["A"]["failed"]) == (2, 1, 1)
    assert (arms["B"]["sent"], arms["B"]["delivered"], arms["B"]["replies"]) == (2, 2, 1)
