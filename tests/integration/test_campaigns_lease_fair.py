"""Campaigns replicas share the active campaigns on PostgreSQL: each leases about its fair
share (active campaigns / live replicas, rounded up) instead of the first claim taking every
free campaign; a lone replica still takes them all, a dead replica's campaigns are taken
over when its leases run out, and a campaign given up is never held by two replicas at once.
The schedulers only claim here (no bus, no recipients service): the claim is the guard."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.campaigns import lifecycle
from services.campaigns.scheduler import Scheduler
from services.campaigns.schema import campaigns, metadata
from services.campaigns.store import Store
from shared.timeutil import Clock

pytestmark = pytest.mark.pg
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class FakeClock(Clock):
    def __init__(self) -> None:
        self.t = T0

    def now(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


@pytest.fixture
async def engine(empty_pg_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_async_engine(empty_pg_url, pool_size=4)
    async with eng.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield eng
    await eng.dispose()


async def add_campaigns(
    engine: AsyncEngine, n: int, statuses: tuple[str, ...] = (lifecycle.SENDING,), first: int = 0
) -> list[str]:
    """n active campaigns cp-<first>..., created a second apart, statuses in turn."""
    ids = [f"cp-{first + i}" for i in range(n)]
    async with engine.begin() as conn:
        await conn.execute(
            campaigns.insert(),
            [
                dict(
                    id=cid,
                    workspace_id="w",
                    name=cid,
                    channel=c.CHANNEL_SMS,
                    status=statuses[i % len(statuses)],
                    mode=pb.CAMPAIGN_MODE_ON_DEMAND,
                    category_ids=[],
                    moderation=pb.MODERATION_STATE_APPROVED,
                    created_at=T0 + timedelta(seconds=first + i),
                    updated_at=T0,
                )
                for i, cid in enumerate(ids)
            ],
        )
    return ids


def replica(engine: AsyncEngine, clock: FakeClock, name: str) -> Scheduler:
    return Scheduler(Store(engine), None, None, clock=clock, lease=10, owner=name)  # type: ignore[arg-type]


async def owners(engine: AsyncEngine) -> Counter[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(campaigns.c.lease_owner))
        return Counter(r[0] for r in rows)


async def ticks(
    clock: FakeClock,
    reps: list[Scheduler],
    n: int,
    step: float = 0.2,
    held: dict[str, set[str]] | None = None,
) -> dict[str, set[str]]:
    """n rounds in which every replica claims at the same moment (as their ticks overlap);
    after each, no campaign is in the hands of two replicas (what each last claimed is what
    it acts on until its next claim)."""
    held = held if held is not None else {}
    for _ in range(n):
        got = await asyncio.gather(*(r.claim(clock.now()) for r in reps))
        for r, rows in zip(reps, got, strict=True):
            held[r.owner] = {x["id"] for x in rows}
        seen: Counter[str] = Counter(cid for ids in held.values() for cid in ids)
        assert not [cid for cid, k in seen.items() if k > 1], held
        clock.advance(step)
    return held


async def test_two_replicas_end_with_two_campaigns_each(engine: AsyncEngine) -> None:
    await add_campaigns(engine, 4)
    clock = FakeClock()
    a, b = replica(engine, clock, "replica-a"), replica(engine, clock, "replica-b")
    held = await ticks(clock, [a, b], 8)
    assert {k: len(v) for k, v in held.items()} == {"replica-a": 2, "replica-b": 2}
    assert await owners(engine) == {"replica-a": 2, "replica-b": 2}


async def test_a_replica_over_its_share_gives_the_surplus_to_the_other(engine: AsyncEngine) -> None:
    """One replica took all four while alone; a second one with a lease of its own (a fifth
    campaign) shows up: the first gives up campaigns until both hold their share (3 of 5)."""
    ids = await add_campaigns(engine, 4)
    clock = FakeClock()
    a, b = replica(engine, clock, "replica-a"), replica(engine, clock, "replica-b")
    held = await ticks(clock, [a], 6)
    assert held["replica-a"] == set(ids)
    await add_campaigns(engine, 1, first=4)
    held = await ticks(clock, [b, a], 6, held=held)
    assert sorted(len(v) for v in held.values()) == [2, 3], held
    assert "cp-4" in held["replica-b"]


async def test_an_idle_replica_started_after_all_were_leased_gets_its_share(
    engine: AsyncEngine,
) -> None:
    """A replica that holds nothing is invisible to the others: the lone holder offers a
    campaign now and then, the idle one takes it, and the shares follow."""
    await add_campaigns(engine, 4)
    clock = FakeClock()
    a, b = replica(engine, clock, "replica-a"), replica(engine, clock, "replica-b")
    held = await ticks(clock, [a], 6)
    held = await ticks(clock, [a, b], 170, step=0.5, held=held)  # past the first offer (60 s)
    assert {k: len(v) for k, v in held.items()} == {"replica-a": 2, "replica-b": 2}


async def test_a_lone_replica_takes_every_campaign(engine: AsyncEngine) -> None:
    ids = await add_campaigns(engine, 4)
    clock = FakeClock()
    a = replica(engine, clock, "replica-a")
    held = await ticks(clock, [a], 6)
    assert held["replica-a"] == set(ids)
    assert await owners(engine) == {"replica-a": 4}


async def test_a_dead_replicas_campaigns_are_taken_over_when_its_leases_run_out(
    engine: AsyncEngine,
) -> None:
    ids = await add_campaigns(engine, 4)
    clock = FakeClock()
    a, b = replica(engine, clock, "replica-a"), replica(engine, clock, "replica-b")
    held = await ticks(clock, [a, b], 8)
    assert len(held["replica-b"]) == 2
    # replica-a dies: until its leases run out replica-b keeps its share, then takes all
    del held["replica-a"]
    held = await ticks(clock, [b], 20, step=0.4, held=held)  # 8 s < the 10 s lease
    assert len(held["replica-b"]) == 2
    held = await ticks(clock, [b], 10, step=0.4, held=held)
    assert held["replica-b"] == set(ids)
    assert await owners(engine) == {"replica-b": 4}


async def test_max_leases_caps_each_replica(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HERALD_SCHEDULER_MAX_LEASES", "1")
    await add_campaigns(engine, 4)
    clock = FakeClock()
    a, b = replica(engine, clock, "replica-a"), replica(engine, clock, "replica-b")
    held = await ticks(clock, [a, b], 6)
    assert {k: len(v) for k, v in held.items()} == {"replica-a": 1, "replica-b": 1}
    assert (await owners(engine))[""] == 2  # the others wait, unleased


async def test_a_campaign_being_built_is_not_given_up(engine: AsyncEngine) -> None:
    """Over its share, a replica gives up a sending campaign and keeps those it builds."""
    await add_campaigns(
        engine,
        4,
        statuses=(lifecycle.BUILDING, lifecycle.BUILDING, lifecycle.SENDING, lifecycle.BUILDING),
    )
    clock = FakeClock()
    a, b = replica(engine, clock, "replica-a"), replica(engine, clock, "replica-b")
    held = await ticks(clock, [a], 6)
    await add_campaigns(engine, 1, first=4)
    held = await ticks(clock, [b, a], 6, held=held)
    assert held == {"replica-a": {"cp-0", "cp-1", "cp-3"}, "replica-b": {"cp-2", "cp-4"}}
