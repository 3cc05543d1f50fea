"""Scheduling with an injectable clock (no sleeps): ON_TIME start, SPREAD pacing, daily
windows, expiry, TRIGGER, auto-pause (only while messages remain to send), leases across
replicas, restart, the ledger-based assumed-delivery sweep. Real SQL (both backends), a
private NATS, the real recipients service."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from nats.aio.msg import Msg
from prometheus_client import REGISTRY
from sqlalchemy import select, update

from services.campaigns.ledger import Ledger
from services.campaigns.scheduler import Scheduler
from services.campaigns.schema import campaigns, messages
from shared import bus, eventbatch, states
from shared.timeutil import to_ts
from tests.integration.campaigns_harness import Harness, new_sender, sms, tick

S = c.MessageStatus


def md(ws: str) -> tuple:
    return (("x-herald-workspace", ws),)


async def approve(h: Harness, req: pb.CreateCampaignRequest, ws: str) -> str:
    req.campaign.auto_start = True
    cp = await h.stub.CreateCampaign(req, metadata=md(ws))
    await h.stub.ApproveCampaign(pb.CampaignActionRequest(id=cp.id), metadata=md(ws))
    return cp.id


async def test_on_time_campaign_starts_within_a_second_of_start_at(h: Harness) -> None:
    start_at = h.clock.now() + timedelta(minutes=5)
    cid = await approve(h, sms(10, mode=pb.CAMPAIGN_MODE_ON_TIME, start_at=to_ts(start_at)), "w")
    await h.ticks(1)
    h.clock.set(start_at - timedelta(seconds=3))  # nothing happens in between: skip ahead
    await h.ticks(2.6)  # 0.4 s before start_at: still waiting
    assert (await h.status(cid, md("w"))).status == pb.CAMPAIGN_STATUS_PENDING
    await h.ticks(1.2)
    cp = await h.status(cid, md("w"))
    assert cp.status == pb.CAMPAIGN_STATUS_SENDING
    started = cp.started_at.ToDatetime(tzinfo=UTC)
    assert timedelta(0) <= started - start_at < timedelta(seconds=1)
    assert await h.dispatched() == 10


async def test_spread_sends_evenly_per_ten_second_bucket(h: Harness) -> None:
    t0 = h.clock.now() + timedelta(seconds=1)
    cid = await approve(h, sms(600, mode=pb.CAMPAIGN_MODE_SPREAD, start_at=to_ts(t0),
                               end_at=to_ts(t0 + timedelta(seconds=60))), "w")
    sent = await h.ticks(62)
    buckets = Counter(int((t - t0).total_seconds() // 10) for t, n in sent for _ in range(n))
    assert sum(buckets.values()) == 600
    for b in range(6):
        assert 90 <= buckets[b] <= 110, (b, buckets)
    assert (await h.status(cid, md("w"))).status == pb.CAMPAIGN_STATUS_SENDING


async def test_window_closing_mid_send_pauses_and_reopens_next_morning(h: Harness) -> None:
    # 19:59 in Paris (CET): one minute of window left, 1 message per second.
    h.clock.set(datetime(2026, 1, 10, 18, 59, tzinfo=UTC))
    cid = await approve(h, sms(200, max_rate=1.0, window=pb.SendingWindow(
        start="09:00", end="20:00", time_zone="Europe/Paris")), "w")
    await h.ticks(70)
    cp = await h.status(cid, md("w"))
    assert cp.status == pb.CAMPAIGN_STATUS_PAUSED and "outside sending window" in cp.status_reason
    sent_before = await h.dispatched()
    assert 55 <= sent_before <= 62  # about one per second until 20:00
    h.clock.set(datetime(2026, 1, 11, 7, 59, 50, tzinfo=UTC))  # 08:59:50 Paris
    await h.ticks(5)
    assert (await h.status(cid, md("w"))).status == pb.CAMPAIGN_STATUS_PAUSED
    assert await h.dispatched() == sent_before
    await h.ticks(10)  # 09:00 passes
    cp = await h.status(cid, md("w"))
    assert cp.status == pb.CAMPAIGN_STATUS_SENDING and await h.dispatched() > sent_before
    reasons = [x.reason for x in cp.history]
    assert "sending window opened" in reasons


async def test_manual_pause_does_not_resume_by_itself(h: Harness) -> None:
    cid = await approve(h, sms(50, max_rate=1.0), "w")
    await h.ticks(3)
    await h.stub.PauseCampaign(pb.CampaignActionRequest(id=cid, note="checking"), metadata=md("w"))
    n = await h.dispatched()
    await h.ticks(30)
    assert (await h.status(cid, md("w"))).status == pb.CAMPAIGN_STATUS_PAUSED
    assert await h.dispatched() == n
    await h.stub.ResumeCampaign(pb.CampaignActionRequest(id=cid), metadata=md("w"))
    await h.ticks(5)
    assert await h.dispatched() > n


async def test_end_at_passing_before_completion_expires(h: Harness) -> None:
    end = h.clock.now() + timedelta(seconds=20)
    cid = await approve(h, sms(100, max_rate=2.0, end_at=to_ts(end)), "w")
    await h.ticks(25)
    cp = await h.status(cid, md("w"))
    assert cp.status == pb.CAMPAIGN_STATUS_EXPIRED
    async with h.engine.connect() as conn:
        rows = (await conn.execute(select(messages.c.status, messages.c.failure_category).where(
            messages.c.campaign_id == cid, messages.c.dispatched_at.is_(None)))).all()
    assert rows and all(st == S.MESSAGE_STATUS_FAILED and cat == c.FAILURE_CATEGORY_EXPIRED
                        for st, cat in rows)


async def test_trigger_campaign_sends_one_message_per_call(h: Harness) -> None:
    req = pb.CreateCampaignRequest(campaign=pb.Campaign(
        channel=c.CHANNEL_SMS, sender=new_sender(), mode=pb.CAMPAIGN_MODE_TRIGGER,
        content=pb.Content(text="Your code is {{ code }}")))
    cid = await approve(h, req, "w")
    with pytest.raises(grpc.aio.AioRpcError) as err:  # not open yet
        await h.stub.TriggerCampaign(pb.TriggerCampaignRequest(
            campaign_id=cid, recipient=c.Recipient(phone="+447700900555")), metadata=md("w"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await h.ticks(1)
    assert (await h.status(cid, md("w"))).status == pb.CAMPAIGN_STATUS_SENDING
    m = await h.stub.TriggerCampaign(pb.TriggerCampaignRequest(
        request_id="t-1", campaign_id=cid,
        recipient=c.Recipient(phone="+447700900555", fields={"code": "4242"})), metadata=md("w"))
    again = await h.stub.TriggerCampaign(pb.TriggerCampaignRequest(
        request_id="t-1", campaign_id=cid,
        recipient=c.Recipient(phone="+447700900555", fields={"code": "4242"})), metadata=md("w"))
    assert again.id == m.id and m.status == S.MESSAGE_STATUS_QUEUED and m.fields["code"] == "4242"
    bad = await h.stub.TriggerCampaign(pb.TriggerCampaignRequest(
        campaign_id=cid, recipient=c.Recipient(phone="12")), metadata=md("w"))
    assert bad.status == S.MESSAGE_STATUS_FAILED
    assert bad.failure_category == c.FAILURE_CATEGORY_INVALID_ADDRESS
    await h.ticks(1)
    assert await h.dispatched() == 1
    await h.ticks(5)  # stays open: trigger campaigns never complete by themselves
    assert (await h.status(cid, md("w"))).status == pb.CAMPAIGN_STATUS_SENDING


async def test_auto_pause_after_consecutive_failures(h: Harness) -> None:
    cid = await approve(h, sms(20, max_rate=5.0, auto_pause_failures=5), "w")
    await h.ticks(2)
    async with h.engine.begin() as conn:
        ids = [r[0] for r in await conn.execute(select(messages.c.id).where(
            messages.c.campaign_id == cid, messages.c.dispatched_at.is_not(None)).limit(5))]
        assert len(ids) == 5
        for i, mid in enumerate(ids):
            await conn.execute(update(messages).where(messages.c.id == mid).values(
                status=S.MESSAGE_STATUS_FAILED, status_rank=5,
                updated_at=h.clock.now() + timedelta(milliseconds=i)))
    h.clock.advance(1)
    await tick(h.scheduler)
    cp = await h.status(cid, md("w"))
    assert cp.status == pb.CAMPAIGN_STATUS_PAUSED and "5 consecutive failures" in cp.status_reason
    assert f"herald resume {cid}" in cp.status_reason  # says how to resume
    await h.ticks(5)  # a person must fix the route: it never resumes by itself
    assert (await h.status(cid, md("w"))).status == pb.CAMPAIGN_STATUS_PAUSED
    await h.stub.ResumeCampaign(pb.CampaignActionRequest(id=cid), metadata=md("w"))
    await h.ticks(2)  # the old failures no longer count
    assert (await h.status(cid, md("w"))).status == pb.CAMPAIGN_STATUS_SENDING


@pytest.mark.parametrize("code", ["ABANDONED", "CONNECTION_LOST"])
async def test_unanswered_outcomes_do_not_auto_pause(h: Harness, code: str) -> None:
    # Jobs abandoned after a gateway crash or lost send markers, and a dropped SMPP
    # connection's in-flight window ("the carrier may have accepted it"), say nothing about
    # the route: the rest of the audience keeps going.
    cid = await approve(h, sms(20, max_rate=5.0, auto_pause_failures=5), "w")
    await h.ticks(2)
    async with h.engine.begin() as conn:
        ids = [r[0] for r in await conn.execute(select(messages.c.id).where(
            messages.c.campaign_id == cid, messages.c.dispatched_at.is_not(None)).limit(5))]
        assert len(ids) == 5
        for i, mid in enumerate(ids):
            await conn.execute(update(messages).where(messages.c.id == mid).values(
                status=S.MESSAGE_STATUS_FAILED, status_rank=5, error_code=code,
                failure_category=c.FAILURE_CATEGORY_UNKNOWN,
                updated_at=h.clock.now() + timedelta(milliseconds=i)))
    h.clock.advance(1)
    await tick(h.scheduler)
    assert (await h.status(cid, md("w"))).status == pb.CAMPAIGN_STATUS_SENDING


async def test_a_campaign_whose_messages_are_all_final_completes_despite_failures(h: Harness) -> None:
    # Nothing left to send: the last five outcomes failing must not pause it for ever.
    cid = await approve(h, sms(5, auto_pause_failures=5), "w")
    await h.ticks(1)
    assert await h.dispatched() == 5
    async with h.engine.begin() as conn:
        ids = [r[0] for r in await conn.execute(select(messages.c.id).where(messages.c.campaign_id == cid))]
        for i, mid in enumerate(ids):
            await conn.execute(update(messages).where(messages.c.id == mid).values(
                status=S.MESSAGE_STATUS_FAILED, status_rank=5,
                updated_at=h.clock.now() + timedelta(milliseconds=i)))
    h.clock.advance(1)
    await tick(h.scheduler)
    cp = await h.status(cid, md("w"))
    assert cp.status == pb.CAMPAIGN_STATUS_DONE, cp.status_reason
    assert cp.outcome == pb.CAMPAIGN_OUTCOME_ALL_FAILED


async def test_replicas_never_act_on_the_same_campaign(h: Harness) -> None:
    cid = await approve(h, sms(30, max_rate=1.0), "w")
    other = Scheduler(h.store, h.scheduler.js, h.scheduler.recipients, clock=h.clock, lease=10)
    await tick(h.scheduler)  # replica A leases the campaign (and builds it)
    assert await other.claim(h.clock.now()) == []
    h.clock.advance(11)  # A is gone: its lease runs out and B takes over
    claimed = await other.claim(h.clock.now())
    assert [r["id"] for r in claimed] == [cid]
    async with h.engine.connect() as conn:
        owner = (await conn.execute(select(campaigns.c.lease_owner).where(campaigns.c.id == cid))).scalar_one()
    assert owner == other.owner


async def test_a_restarted_scheduler_carries_on(h: Harness) -> None:
    cid = await approve(h, sms(40, max_rate=2.0), "w")
    await h.ticks(5)
    n = await h.dispatched()
    assert 0 < n < 40
    fresh = Scheduler(h.store, h.scheduler.js, h.scheduler.recipients, clock=h.clock, lease=10)
    h.clock.advance(11)
    for _ in range(150):
        h.clock.advance(0.2)
        await tick(fresh)
    assert await h.dispatched() == 40
    assert (await h.status(cid, md("w"))).status == pb.CAMPAIGN_STATUS_SENDING  # receipts pending


async def job_errors_of(h: Harness, cid: str) -> list[pb.JobError]:
    return list((await h.stub.ListJobErrors(pb.ListJobErrorsRequest(campaign_id=cid), metadata=md("w"))).errors)


async def test_non_finite_rate_fails_the_campaign_once(h: Harness) -> None:
    # Refused at create; a row stored before that check must fail, not raise every tick.
    cp = await h.stub.CreateCampaign(sms(3, auto_start=True), metadata=md("w"))
    async with h.engine.begin() as conn:
        await conn.execute(update(campaigns).where(campaigns.c.id == cp.id).values(max_rate=float("inf")))
    await h.stub.ApproveCampaign(pb.CampaignActionRequest(id=cp.id), metadata=md("w"))
    await h.ticks(3)
    got = await h.status(cp.id, md("w"))
    assert got.status == pb.CAMPAIGN_STATUS_FAILED and "max_rate" in got.status_reason
    assert [x.stage for x in await job_errors_of(h, cp.id)] == ["dispatch"]
    msgs = (await h.stub.ListMessages(pb.ListMessagesRequest(campaign_id=cp.id), metadata=md("w"))).messages
    assert {(m.status, m.failure_category) for m in msgs} == {
        (S.MESSAGE_STATUS_FAILED, c.FAILURE_CATEGORY_CONFIG_ERROR)}
    assert await h.dispatched() == 0


async def test_oversized_job_fails_its_messages_once(h: Harness) -> None:
    # Refused at create; a body over the bus payload limit stored before must not loop.
    cp = await h.stub.CreateCampaign(sms(3, auto_start=True), metadata=md("w"))
    async with h.engine.begin() as conn:
        await conn.execute(update(campaigns).where(campaigns.c.id == cp.id).values(
            content_text="x" * (3 * 1024 * 1024)))
    await h.stub.ApproveCampaign(pb.CampaignActionRequest(id=cp.id), metadata=md("w"))
    await h.ticks(3)
    got = await h.status(cp.id, md("w"))
    assert got.status == pb.CAMPAIGN_STATUS_DONE and got.outcome == pb.CAMPAIGN_OUTCOME_ALL_FAILED
    errors = await job_errors_of(h, cp.id)
    assert len(errors) == 1 and "payload limit" in errors[0].message and errors[0].stage == "dispatch"
    msgs = (await h.stub.ListMessages(pb.ListMessagesRequest(campaign_id=cp.id), metadata=md("w"))).messages
    assert {(m.failure_category, m.stage, m.result) for m in msgs} == {
        (c.FAILURE_CATEGORY_CONTENT_REJECTED, pb.MESSAGE_STAGE_NOT_SENT, pb.DELIVERY_RESULT_FAILED)}


async def test_jobs_carry_every_variable_and_previews_are_rendered(h: Harness) -> None:
    req = sms(0, content=pb.Content(text="Hi {{ first_name | default('there') }}, code {{ code }} for {{ language }}"))
    req.recipients.extend([
        c.Recipient(phone="+447700900401", first_name="Ada", last_name="Lovelace", language="en",
                    external_id="crm-1", fields={"code": "4821"}),
        c.Recipient(phone="+447700900402", fields={"code": "7305"})])
    sending: list[e.MessageEvent] = []

    async def seen(msg: Msg) -> None:
        sending.extend(ev for ev in eventbatch.events_of(msg) if ev.campaign_id == cid)

    cid = ""
    sub = await h.nc.subscribe("events.message.sending", cb=seen)
    cid = await approve(h, req, "w")
    await h.ticks(1)
    await h.nc.flush()
    async with h.engine.connect() as conn:
        rows = {r["address"]: r for r in (await conn.execute(select(messages).where(
            messages.c.campaign_id == cid))).mappings().all()}
    ada = rows["+447700900401"]
    assert ada["fields"] == {"code": "4821", "first_name": "Ada", "last_name": "Lovelace",
                             "full_name": "Ada Lovelace", "phone": "+447700900401", "email": "",
                             "external_id": "crm-1", "language": "en", "contact_id": ""}
    assert ada["content_preview"] == "Hi Ada, code 4821 for en"
    assert rows["+447700900402"]["content_preview"] == "Hi there, code 7305 for "
    msgs = (await h.stub.ListMessages(pb.ListMessagesRequest(campaign_id=cid), metadata=md("w"))).messages
    assert sorted(m.fields["code"] for m in msgs) == ["4821", "7305"]
    assert {len(m.fields) for m in msgs} == {1}  # custom fields only, not the built-ins
    assert {m.stage for m in msgs} == {pb.MESSAGE_STAGE_SENDING}
    for _ in range(200):  # the events were published before the rows changed; delivery lags
        if len(sending) >= 2:
            break
        await asyncio.sleep(0.05)
    await sub.unsubscribe()
    assert sorted(ev.message_id for ev in sending) == sorted(r["id"] for r in rows.values())
    assert {(ev.status, ev.attempt, ev.event_id.split(":")[1]) for ev in sending} == {
        (S.MESSAGE_STATUS_SENDING, 1, "sending")}


async def ledger_statuses(h: Harness, cid: str) -> dict[str, int]:
    async with h.engine.connect() as conn:
        return dict((await conn.execute(select(messages.c.id, messages.c.status).where(
            messages.c.campaign_id == cid))).all())


async def until(cond: Any) -> None:
    """Wait (bounded) for the ledger consumer to catch up; the caller asserts afterwards."""
    for _ in range(200):
        if await cond():
            return
        await asyncio.sleep(0.05)


async def test_old_submitted_sms_are_assumed_delivered_from_the_ledger(h: Harness) -> None:
    # Nothing in Redis or a gateway: the ledger's SUBMITTED rows alone drive the sweep.
    cid = await approve(h, sms(4), "w")
    await h.ticks(1)
    assert await h.dispatched() == 4
    ids = sorted(await ledger_statuses(h, cid))
    assumed: list[e.MessageEvent] = []

    async def seen(msg: Msg) -> None:
        assumed.extend(ev for ev in eventbatch.events_of(msg) if ev.campaign_id == cid)

    sub = await h.nc.subscribe("events.message.assumed_delivered", cb=seen)
    stop = asyncio.Event()
    consumer = asyncio.create_task(Ledger(h.store, h.scheduler.js, clock=h.clock).run(stop))
    try:
        # What the gateway reports: three submitted (no receipt ever comes), one delivered.
        evs = [e.MessageEvent(event_id=f"{mid}:submitted:1", kind=e.MESSAGE_EVENT_KIND_SUBMITTED,
                              status=S.MESSAGE_STATUS_SUBMITTED, message_id=mid, campaign_id=cid,
                              workspace_id="w", channel=c.CHANNEL_SMS, attempt=1,
                              occurred_at=to_ts(h.clock.now())) for mid in ids]
        evs.append(e.MessageEvent(event_id=f"{ids[3]}:dlr:1", kind=e.MESSAGE_EVENT_KIND_DELIVERED,
                                  status=S.MESSAGE_STATUS_DELIVERED, message_id=ids[3], campaign_id=cid,
                                  workspace_id="w", channel=c.CHANNEL_SMS, attempt=1,
                                  occurred_at=to_ts(h.clock.now())))
        await bus.publish_many(h.scheduler.js, [(states.message_subject(ev.kind), ev, ev.event_id)
                                                for ev in evs])

        async def recorded() -> bool:
            return sorted((await ledger_statuses(h, cid)).values()) == sorted(
                [S.MESSAGE_STATUS_SUBMITTED] * 3 + [S.MESSAGE_STATUS_DELIVERED])
        await until(recorded)
        assert await recorded()
        before = REGISTRY.get_sample_value("herald_campaigns_assumed_delivered_total") or 0.0

        h.clock.advance(172800 - 60)  # one minute short of HERALD_ASSUMED_DELIVERED_AFTER
        await tick(h.scheduler)
        assert (REGISTRY.get_sample_value("herald_campaigns_assumed_delivered_total") or 0.0) == before
        assert (await h.status(cid, md("w"))).status == pb.CAMPAIGN_STATUS_SENDING

        h.clock.advance(120)  # now past it (and past the sweep interval)
        await tick(h.scheduler)
        await h.nc.flush()

        async def applied() -> bool:
            return sorted((await ledger_statuses(h, cid)).values()) == sorted(
                [S.MESSAGE_STATUS_ASSUMED_DELIVERED] * 3 + [S.MESSAGE_STATUS_DELIVERED])
        await until(applied)
        assert await applied()
    finally:
        stop.set()
        await consumer
        await sub.unsubscribe()
    assert (REGISTRY.get_sample_value("herald_campaigns_assumed_delivered_total") or 0.0) == before + 3
    assert sorted((ev.event_id, ev.attempt, ev.channel) for ev in assumed) == [
        (f"{mid}:assumed:1", 1, c.CHANNEL_SMS) for mid in ids[:3]]
    h.clock.advance(0.2)
    await tick(h.scheduler)
    cp = await h.status(cid, md("w"))
    assert cp.status == pb.CAMPAIGN_STATUS_DONE and cp.progress.assumed_delivered == 3
