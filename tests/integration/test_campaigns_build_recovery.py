"""A campaign build interrupted at any step is taken up again by a restarted scheduler and
ends with every recipient in the ledger exactly once, never fewer; a non-empty request that
yields no message FAILS the campaign with a job error instead of completing it. Real SQL
(both backends), a private NATS, the real recipients service; the crash is an exception
raised once at the step (what follows it never runs, as after a kill)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import grpc
import pytest
from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2 as rpb
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import ConsumerConfig
from prometheus_client import REGISTRY
from sqlalchemy import delete, func, select

from services.campaigns.publishing import BatchPublisher
from services.campaigns.scheduler import Scheduler
from services.campaigns.scheduler import build as scheduler_module
from services.campaigns.schema import campaign_targets, messages
from shared import auth, bus, eventbatch
from tests.integration.campaigns_harness import Harness, sms, tick

N = 30
STEPS = ["load_targets", "audience_stream", "publish_events", "move_to_sending",
         "move_to_sending_targets_gone"]


def md(ws: str) -> tuple:
    return (("x-herald-workspace", ws),)


async def approve(h: Harness, req: pb.CreateCampaignRequest, ws: str = "w") -> str:
    req.campaign.auto_start = True
    cp = await h.stub.CreateCampaign(req, metadata=md(ws))
    await h.stub.ApproveCampaign(pb.CampaignActionRequest(id=cp.id), metadata=md(ws))
    return cp.id


def builds(result: str) -> float:
    return REGISTRY.get_sample_value("herald_campaigns_builds_total", {"result": result}) or 0.0


async def queued_events(h: Harness, campaign_id: str) -> Counter[str]:
    """How many events.message.queued the EVENTS stream holds per message of the campaign
    (a throwaway test consumer reads the whole stream), as the consumers apply them: a copy
    stored again in a batch made up differently (a resumed build announces its rows again,
    in other batches) has the same event_id and counts once."""
    js = h.scheduler.js
    name = f"build-recovery-{uuid.uuid4().hex[:8]}"
    sub = await js.pull_subscribe("events.message.queued", durable=name, stream=bus.EVENTS_STREAM,
                                  config=ConsumerConfig(durable_name=name,
                                                        filter_subject="events.message.queued"))
    seen: Counter[str] = Counter()
    event_ids: set[str] = set()
    try:
        while True:
            try:
                msgs = await sub.fetch(1000, timeout=0.5)
            except (NatsTimeout, TimeoutError):
                break
            for m in msgs:
                for ev in eventbatch.events_of(m):
                    if ev.campaign_id == campaign_id and ev.event_id not in event_ids:
                        event_ids.add(ev.event_id)
                        seen[ev.message_id] += 1
                await m.ack()
    finally:
        await js.delete_consumer(bus.EVENTS_STREAM, name)
    return seen


class BrokenStream:
    """The real recipients stub whose audience stream breaks (UNAVAILABLE) after `after`
    members, once: the recipients service dying in the middle of a build."""

    def __init__(self, real: Any, after: int) -> None:
        self.real, self.after, self.broken = real, after, False

    def ResolveAudienceChunks(self, req: rpb.ResolveAudienceRequest, **kw: Any) -> AsyncIterator[Any]:  # noqa: N802
        async def gen() -> AsyncIterator[Any]:
            i = 0
            async for chunk in self.real.ResolveAudienceChunks(req, **kw):
                members = list(chunk.members)
                if not self.broken and i + len(members) > self.after:
                    self.broken = True
                    yield rpb.AudienceChunk(members=members[:self.after - i])
                    raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(),
                                               grpc.aio.Metadata(), details="recipients went away")
                i += len(members)
                yield chunk
        return gen()


def crash_once(monkeypatch: pytest.MonkeyPatch, h: Harness, step: str, crashed: list[str]) -> None:
    """Make `step` of the first build fail once, as a kill at that point would."""
    if step == "load_targets":  # nothing written yet
        real_load = h.store.load_targets

        async def load(campaign_id: str) -> Any:
            if not crashed:
                crashed.append(step)
                raise RuntimeError("killed while loading the inline targets")
            return await real_load(campaign_id)
        monkeypatch.setattr(h.store, "load_targets", load)
    elif step == "audience_stream":  # part of the audience written (chunks of 10 here)
        monkeypatch.setattr(scheduler_module, "BUILD_CHUNK", 10, raising=False)
        broken = BrokenStream(h.scheduler.recipients, after=15)
        h.scheduler.recipients = broken
        crashed.append(step)
    elif step == "publish_events":  # ledger written, events not published
        real_publish = BatchPublisher.publish_many

        async def publish(self: BatchPublisher, items: list) -> None:
            if not crashed and any(s == "events.message.queued" for s, _p, _k in items):
                crashed.append(step)
                raise ConnectionError("killed while publishing the queued events")
            await real_publish(self, items)
        monkeypatch.setattr(BatchPublisher, "publish_many", publish)
    else:  # ledger written and announced, campaign not yet SENDING
        real_transition = h.scheduler.transition

        async def transition(campaign_id: str, target: str, *args: Any, **kw: Any) -> Any:
            if target == "SENDING" and not crashed:
                crashed.append(step)
                raise RuntimeError("killed before the move to SENDING")
            return await real_transition(campaign_id, target, *args, **kw)
        monkeypatch.setattr(h.scheduler, "transition", transition)


@pytest.mark.parametrize("step", STEPS)
async def test_a_build_interrupted_at_each_step_ends_with_every_recipient_once(
        h: Harness, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    crashed: list[str] = []
    crash_once(monkeypatch, h, step, crashed)
    resumed_before = builds("resumed")
    cid = await approve(h, sms(N))
    h.clock.advance(0.2)
    await tick(h.scheduler)
    assert crashed == [step]
    assert (await h.status(cid, md("w"))).status == pb.CAMPAIGN_STATUS_BUILDING
    if step == "audience_stream":  # the chunk written before the stream broke is kept
        async with h.engine.connect() as conn:
            assert (await conn.execute(select(func.count()).select_from(messages).where(
                messages.c.campaign_id == cid))).scalar_one() == 10
    if step == "move_to_sending_targets_gone":
        # What the earlier code left behind (targets dropped in their own transaction, the
        # move to SENDING lost): the ledger alone must carry the audience on.
        async with h.engine.begin() as conn:
            await conn.execute(delete(campaign_targets).where(campaign_targets.c.campaign_id == cid))

    # A restarted process (another owner, once the dead one's lease ran out) takes over.
    fresh = Scheduler(h.store, h.scheduler.js, h.scheduler.recipients, clock=h.clock, lease=10,
                      max_payload=h.nc.max_payload)
    h.clock.advance(11)
    for _ in range(5):
        h.clock.advance(0.2)
        await tick(fresh)

    cp = await h.status(cid, md("w"))
    assert cp.status == pb.CAMPAIGN_STATUS_SENDING, cp.status_reason  # receipts pending
    assert cp.recipients_count == N and cp.progress.total == N
    assert [x.reason for x in cp.history].count(f"built {N} messages") == 1
    async with h.engine.connect() as conn:
        rows = (await conn.execute(select(messages.c.id, messages.c.address, messages.c.dispatched_at)
                                   .where(messages.c.campaign_id == cid))).all()
        targets = (await conn.execute(select(func.count()).select_from(campaign_targets).where(
            campaign_targets.c.campaign_id == cid))).scalar_one()
    assert sorted(r.address for r in rows) == [f"+447700900{i:03d}" for i in range(N)]
    assert all(r.dispatched_at is not None for r in rows)
    assert targets == 0  # dropped with the move to SENDING
    events = await queued_events(h, cid)
    assert events == Counter({r.id: 1 for r in rows})  # every message announced, once
    assert builds("resumed") == resumed_before + 1


async def test_a_request_that_yields_no_message_fails_the_campaign_with_a_job_error(h: Harness) -> None:
    rmd = auth.call_metadata(workspace="w")
    cat = await h.scheduler.recipients.CreateCategory(
        rpb.CreateCategoryRequest(name=f"empty-{uuid.uuid4().hex[:6]}"), metadata=rmd)
    req = sms(0)
    req.campaign.category_ids.append(cat.id)
    failed_before = builds("empty_failed")
    cid = await approve(h, req)
    await h.ticks(1)
    cp = await h.status(cid, md("w"))
    assert cp.status == pb.CAMPAIGN_STATUS_FAILED, cp.status_reason
    assert "yielded no messages" in cp.status_reason and "1 categories" in cp.status_reason
    errors = (await h.stub.ListJobErrors(pb.ListJobErrorsRequest(campaign_id=cid), metadata=md("w"))).errors
    assert [(x.stage, "yielded no messages" in x.message) for x in errors] == [("build", True)]
    assert builds("empty_failed") == failed_before + 1
    await h.ticks(1)  # terminal: nothing more happens
    assert (await h.status(cid, md("w"))).status == pb.CAMPAIGN_STATUS_FAILED



class RepeatingStream:
    """The real recipients stub whose audience stream repeats addresses (as an audience
    source without its own de-duplication would): each member followed by a copy under
    another name in the same chunk, then those copies again in a last chunk."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def ResolveAudienceChunks(self, req: rpb.ResolveAudienceRequest, **kw: Any) -> AsyncIterator[Any]:  # noqa: N802
        async def gen() -> AsyncIterator[Any]:
            copies = []
            async for chunk in self.real.ResolveAudienceChunks(req, **kw):
                for m in chunk.members:
                    again = rpb.AudienceMember()
                    again.CopyFrom(m)
                    again.recipient.first_name = "Later"
                    copies.append(again)
                    yield rpb.AudienceChunk(members=[m, again])
            yield rpb.AudienceChunk(members=copies)
        return gen()


async def test_an_address_repeated_in_the_audience_gets_one_message_the_first(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scheduler_module, "BUILD_CHUNK", 4)
    h.scheduler.recipients = RepeatingStream(h.scheduler.recipients)
    req = sms(0, content=pb.Content(text="Hi {{ first_name }}"))
    req.recipients.extend(c.Recipient(phone=f"+447700900{i:03d}", first_name=f"P{i}") for i in range(6))
    cid = await approve(h, req)
    await h.ticks(1)
    cp = await h.status(cid, md("w"))
    assert cp.recipients_count == 6 and cp.progress.total == 6, cp.status_reason
    async with h.engine.connect() as conn:
        rows = (await conn.execute(select(messages.c.address, messages.c.content_preview)
                                   .where(messages.c.campaign_id == cid))).all()
    assert sorted(rows) == [(f"+447700900{i:03d}", f"Hi P{i}") for i in range(6)]


class SlowStream:
    """The real recipients stub whose audience arrives 10 members at a time, `between` run
    after each piece: a build that outlasts the lease taken at the start of its tick."""

    def __init__(self, real: Any, between: Any) -> None:
        self.real, self.between = real, between

    def ResolveAudienceChunks(self, req: rpb.ResolveAudienceRequest, **kw: Any) -> AsyncIterator[Any]:  # noqa: N802
        async def gen() -> AsyncIterator[Any]:
            async for chunk in self.real.ResolveAudienceChunks(req, **kw):
                members = list(chunk.members)
                for i in range(0, len(members), 10):
                    yield rpb.AudienceChunk(members=members[i:i + 10])
                    await self.between()
        return gen()


async def test_a_build_longer_than_its_lease_keeps_it(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each written chunk renews the lease: another replica ticking while the build takes
    longer than the lease does not take the campaign (and build it a second time)."""
    monkeypatch.setattr(scheduler_module, "BUILD_CHUNK", 10)
    other = Scheduler(h.store, h.scheduler.js, h.scheduler.recipients, clock=h.clock, lease=10,
                      max_payload=h.nc.max_payload, owner="other-replica")
    taken: list[str] = []

    async def between() -> None:
        h.clock.advance(6)  # 3 pieces: 18 s, past the 10 s lease the build's tick took
        taken.extend(r["id"] for r in await other.claim(h.clock.now()))

    h.scheduler.recipients = SlowStream(h.scheduler.recipients, between)
    built_before = builds("built")
    cid = await approve(h, sms(N))
    h.clock.advance(0.2)
    await tick(h.scheduler)
    assert cid not in taken
    cp = await h.status(cid, md("w"))
    assert cp.status == pb.CAMPAIGN_STATUS_SENDING and cp.recipients_count == N
    assert builds("built") == built_before + 1


async def test_a_build_stops_when_another_replica_holds_the_lease(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """A build whose lease went to another live replica (it stalled longer than the lease
    and the other took over) stops at its next chunk instead of building alongside."""
    from services.campaigns.schema import campaigns

    monkeypatch.setattr(scheduler_module, "BUILD_CHUNK", 10)
    cid = ""

    async def between() -> None:
        async with h.engine.begin() as conn:
            await conn.execute(campaigns.update().where(campaigns.c.id == cid).values(
                lease_owner="other-replica", lease_until=h.clock.now() + timedelta(seconds=10)))

    h.scheduler.recipients = SlowStream(h.scheduler.recipients, between)
    cid = await approve(h, sms(N))
    h.clock.advance(0.2)
    await tick(h.scheduler)
    assert (await h.status(cid, md("w"))).status == pb.CAMPAIGN_STATUS_BUILDING
    async with h.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(messages).where(
            messages.c.campaign_id == cid))).scalar_one() == 10  # the first chunk only


async def test_a_large_build_refreshes_the_planner_statistics(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL: a build adding ANALYZE_AFTER rows or more analyzes the ledger, so the
    created-order index serves ListMessages and exports at once (not after autovacuum)."""
    if h.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's planner statistics")
    from sqlalchemy import text

    monkeypatch.setattr(scheduler_module, "ANALYZE_AFTER", N)

    async def analyzed() -> int:
        async with h.engine.connect() as conn:
            return int((await conn.execute(text(
                "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'messages'"))).scalar_one())

    before = await analyzed()
    cid = await approve(h, sms(N))
    h.clock.advance(0.2)
    await tick(h.scheduler)
    assert (await h.status(cid, md("w"))).status == pb.CAMPAIGN_STATUS_SENDING
    for _ in range(50):  # the statistics collector reports with a short delay
        if await analyzed() > before:
            break
        await asyncio.sleep(0.1)
    assert await analyzed() > before
