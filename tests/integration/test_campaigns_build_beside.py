"""A campaign being built never holds up the replica's other campaigns: a SENDING campaign
keeps dispatching and keeps its lease while another campaign's build runs longer than the
lease, and the build still ends with its whole audience. Real SQL (both backends), a private
NATS, the real recipients service; the slow build is the real audience stream held back
after its first piece."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from herald.v1 import campaigns_pb2 as pb
from herald.v1 import recipients_pb2 as rpb
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from services.campaigns.scheduler import build as build_module
from services.campaigns.schema import campaigns, messages
from shared.timeutil import aware
from tests.integration.campaigns_harness import Harness, sms, tick

WS = (("x-herald-workspace", "w"),)


class HeldStream:
    """The real recipients stub whose audience stream stops after its first 10 members until
    `go` is set: a build of a large audience, still running."""

    def __init__(self, real: Any) -> None:
        self.real, self.go, self.waiting = real, asyncio.Event(), asyncio.Event()

    def ResolveAudienceChunks(self, req: rpb.ResolveAudienceRequest, **kw: Any) -> AsyncIterator[Any]:  # noqa: N802
        async def gen() -> AsyncIterator[Any]:
            async for chunk in self.real.ResolveAudienceChunks(req, **kw):
                members = list(chunk.members)
                yield rpb.AudienceChunk(members=members[:10])
                self.waiting.set()
                await self.go.wait()
                if members[10:]:
                    yield rpb.AudienceChunk(members=members[10:])
        return gen()


async def approve(h: Harness, req: pb.CreateCampaignRequest) -> str:
    req.campaign.auto_start = True
    cp = await h.stub.CreateCampaign(req, metadata=WS)
    await h.stub.ApproveCampaign(pb.CampaignActionRequest(id=cp.id), metadata=WS)
    return cp.id


async def dispatched(h: Harness, cid: str) -> int:
    async with h.engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(messages).where(
            messages.c.campaign_id == cid, messages.c.dispatched_at.is_not(None)))).scalar_one()


async def test_a_campaign_keeps_sending_and_its_lease_while_another_is_built(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build_module, "BUILD_CHUNK", 10)
    sending = await approve(h, sms(60, max_rate=5.0))
    h.clock.advance(0.2)
    await tick(h.scheduler)  # built: 5 a second from now on
    assert (await h.status(sending, WS)).status == pb.CAMPAIGN_STATUS_SENDING
    held = HeldStream(h.scheduler.recipients)
    h.scheduler.recipients = held
    built = await approve(h, sms(40))
    before = await dispatched(h, sending)

    for _ in range(60):  # 12 s of ticks, past the 10 s lease, while the build is held
        h.clock.advance(0.2)
        await asyncio.wait_for(h.scheduler.tick(), 10)  # before: the tick waited for the build
    await asyncio.wait_for(held.waiting.wait(), 10)

    cp = await h.status(built, WS)
    assert cp.status == pb.CAMPAIGN_STATUS_BUILDING
    assert await dispatched(h, sending) - before >= 50  # 5 a second for 12 s, 60 in all
    async with h.engine.connect() as conn:
        leases = {r.id: (r.lease_owner, aware(r.lease_until)) for r in await conn.execute(
            select(campaigns.c.id, campaigns.c.lease_owner, campaigns.c.lease_until).where(
                campaigns.c.id.in_([sending, built])))}
    for cid, (owner, until) in leases.items():
        assert owner == h.scheduler.owner and until > h.clock.now(), cid  # renewed by the ticks

    held.go.set()
    await h.scheduler.builds_settled()
    cp = await h.status(built, WS)
    assert cp.status == pb.CAMPAIGN_STATUS_SENDING and cp.recipients_count == 40
    assert [x.reason for x in cp.history].count("built 40 messages") == 1
    await h.ticks(1)
    assert await dispatched(h, built) == 40


async def test_a_stopped_replica_leaves_its_build_to_be_resumed(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopping the scheduler cancels a running build; the campaign stays BUILDING with what
    it wrote, its lease given up, and the next owner finishes it with every recipient once."""
    monkeypatch.setattr(build_module, "BUILD_CHUNK", 10)
    real = h.scheduler.recipients
    held = HeldStream(real)
    h.scheduler.recipients = held
    cid = await approve(h, sms(30))
    stop = asyncio.Event()
    runner = asyncio.create_task(h.scheduler.run(stop))
    await asyncio.wait_for(held.waiting.wait(), 10)
    stop.set()
    h.scheduler.wake.set()
    await asyncio.wait_for(runner, 10)

    assert (await h.status(cid, WS)).status == pb.CAMPAIGN_STATUS_BUILDING
    async with h.engine.connect() as conn:
        owner = (await conn.execute(select(campaigns.c.lease_owner).where(campaigns.c.id == cid))).scalar_one()
    assert owner == ""  # given up at stop: the next replica need not wait for it to run out
    h.scheduler.recipients = real
    await h.ticks(1)
    cp = await h.status(cid, WS)
    assert cp.status == pb.CAMPAIGN_STATUS_SENDING and cp.recipients_count == 30
    async with h.engine.connect() as conn:
        rows = (await conn.execute(select(func.count(), func.count(func.distinct(messages.c.address)))
                                   .where(messages.c.campaign_id == cid))).one()
    assert tuple(rows) == (30, 30)


class Unavailable:
    """A recipients service that answers every audience stream UNAVAILABLE, counting them."""

    def __init__(self) -> None:
        self.calls = 0

    def ResolveAudienceChunks(self, req: rpb.ResolveAudienceRequest, **kw: Any) -> AsyncIterator[Any]:  # noqa: N802
        self.calls += 1

        async def gen() -> AsyncIterator[Any]:
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(),
                                       grpc.aio.Metadata(), details="recipients went away")
            yield  # an async generator
        return gen()


async def test_a_failing_build_is_retried_once_a_tick_not_in_a_loop(h: Harness) -> None:
    """A build that fails at once (the recipients service down) is tried again on the next
    tick, every HERALD_SCHEDULER_INTERVAL: its end does not wake the scheduler at once."""
    down = Unavailable()
    h.scheduler.recipients = down
    cid = await approve(h, sms(10))
    stop = asyncio.Event()
    runner = asyncio.create_task(h.scheduler.run(stop))
    await asyncio.sleep(1.0)  # 5 ticks of 0.2 s
    stop.set()
    await asyncio.wait_for(runner, 10)
    assert 1 <= down.calls <= 8, down.calls
    cp = await h.status(cid, WS)
    assert cp.status == pb.CAMPAIGN_STATUS_BUILDING


async def test_a_tick_holding_a_stale_row_does_not_build_a_built_campaign_again(h: Harness) -> None:
    """A build ends while a tick is under way: the tick's row (read at its claim) still says
    BUILDING. Stepping it must not start a second build (it read the audience again, announced
    every message again and wrote "built N messages" a second time)."""
    cid = await approve(h, sms(20))
    h.clock.advance(0.2)
    await tick(h.scheduler)  # the build starts, runs and ends
    async with h.engine.connect() as conn:
        row = (await conn.execute(select(campaigns).where(campaigns.c.id == cid))).mappings().one()
    assert row["status"] == "SENDING"
    stale = {**row, "status": "BUILDING"}  # what a tick that claimed before the end holds
    resumed = REGISTRY.get_sample_value("herald_campaigns_builds_total", {"result": "resumed"}) or 0.0
    counting = CountingStream(h.scheduler.recipients)
    h.scheduler.recipients = counting
    await h.scheduler.step(stale, h.clock.now())
    await h.scheduler.builds_settled()
    assert counting.calls == 0  # the audience was not read again
    assert (REGISTRY.get_sample_value("herald_campaigns_builds_total", {"result": "resumed"}) or 0.0) == resumed
    cp = await h.status(cid, WS)
    assert [x.reason for x in cp.history].count("built 20 messages") == 1


class CountingStream:
    """The real recipients stub, counting the audience streams opened."""

    def __init__(self, real: Any) -> None:
        self.real, self.calls = real, 0

    def ResolveAudienceChunks(self, req: rpb.ResolveAudienceRequest, **kw: Any) -> AsyncIterator[Any]:  # noqa: N802
        self.calls += 1
        return self.real.ResolveAudienceChunks(req, **kw)
