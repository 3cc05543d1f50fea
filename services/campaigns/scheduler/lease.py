"""Leases: which replica works on which campaign in this tick.

On PostgreSQL the claim selects with FOR UPDATE SKIP LOCKED, so two replicas never claim the
same campaign and a dead replica's campaigns are taken over when its lease runs out. SQLite
has a single writer by nature: run one replica on it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Gauge

from services.campaigns import lifecycle
from services.campaigns.repo import campaigns as campaigns_repo
from services.campaigns.scheduler.base import JobBase

ACTIVE = Gauge("herald_campaigns_active", "Campaigns in an active state.", ["status"])


class LeaseMixin(JobBase):
    async def claim(self, now: datetime) -> list[Any]:
        """Lease the campaigns this replica acts on in this tick."""
        async with self.store.write() as conn:
            return await campaigns_repo.claim(conn, self.owner, now, now + timedelta(seconds=self.lease))

    async def count_active(self) -> None:
        """The active-campaigns gauge, by status (every replica reports the same figures)."""
        async with self.store.read() as conn:
            counts = await campaigns_repo.count_by_status(conn, list(lifecycle.ACTIVE))
        for st in lifecycle.ACTIVE:
            ACTIVE.labels(st).set(counts.get(st, 0))
