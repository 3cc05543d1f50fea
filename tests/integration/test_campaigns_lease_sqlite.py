"""On SQLite (one writer, so one campaigns replica) a replica never gives a lease up: the
offers that let an idle PostgreSQL replica find work would only stall a campaign here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.campaigns.schema import campaigns, metadata
from tests.integration.test_campaigns_lease_fair import FakeClock, add_campaigns, replica


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    eng = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'campaigns.db'}")
    async with eng.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield eng
    await eng.dispose()


async def test_a_lone_sqlite_replica_keeps_every_campaign(engine: AsyncEngine) -> None:
    ids = await add_campaigns(engine, 4)
    clock = FakeClock()
    a = replica(engine, clock, "replica-a")

    def offers() -> float:
        return REGISTRY.get_sample_value("herald_campaigns_lease_releases_total",
                                         {"reason": "offer"}) or 0.0

    for _ in range(4):  # one free campaign leased a tick
        await a.claim(clock.now())
        clock.advance(0.5)
    before = offers()
    # Three minutes of ticks (past three offer periods of a PostgreSQL replica): every tick
    # acts on all four campaigns.
    for _ in range(360):
        assert {r["id"] for r in await a.claim(clock.now())} == set(ids)
        clock.advance(0.5)
    assert offers() == before


async def test_a_stopping_replica_gives_its_leases_up(engine: AsyncEngine) -> None:
    """A replica that stops releases its leases once its last tick ended, so another takes
    the campaigns on its next tick instead of after the lease runs out."""
    ids = await add_campaigns(engine, 2)
    clock = FakeClock()
    a, b = replica(engine, clock, "replica-a"), replica(engine, clock, "replica-b")
    for _ in range(3):
        await a.claim(clock.now())
    stop = asyncio.Event()
    stop.set()  # the run loop ends at once: only the release runs
    await a.run(stop)
    async with engine.connect() as conn:
        leases = (await conn.execute(select(campaigns.c.lease_owner, campaigns.c.lease_until))).all()
    assert leases == [("", None), ("", None)]
    clock.advance(0.5)  # well inside the 10 s lease replica-a held
    await b.claim(clock.now())
    assert {r["id"] for r in await b.claim(clock.now())} == set(ids)
