"""On SQLite (one writer, so one campaigns replica) a replica never gives a lease up: the
offers that let an idle PostgreSQL replica find work would only stall a campaign here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.integration.test_campaigns_lease_fair import FakeClock, add_campaigns, replica


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    from services.campaigns.schema import metadata

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
