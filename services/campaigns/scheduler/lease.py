"""Leases: which replica works on which campaign in this tick.

On PostgreSQL the claim selects with FOR UPDATE SKIP LOCKED, so two replicas never claim the
same campaign and a dead replica's campaigns are taken over when its lease runs out. SQLite
has a single writer by nature: run one replica on it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from prometheus_client import Gauge
from sqlalchemy import func, or_, select, update

from services.campaigns import lifecycle
from services.campaigns.scheduler.base import JobBase
from services.campaigns.schema import campaigns

ACTIVE = Gauge("herald_campaigns_active", "Campaigns in an active state.", ["status"])


class LeaseMixin(JobBase):
    async def claim(self, now: datetime) -> list[Any]:
        """Lease the campaigns this replica acts on in this tick."""
        lease_until = now + timedelta(seconds=self.lease)
        candidates = (
            select(campaigns.c.id)
            .where(campaigns.c.status.in_(list(lifecycle.ACTIVE)),
                   or_(campaigns.c.lease_until.is_(None), campaigns.c.lease_until < now,
                       campaigns.c.lease_owner == self.owner))
            .order_by(campaigns.c.created_at)
            .with_for_update(skip_locked=True)
        )
        async with self.store.engine.begin() as conn:
            ids = [r[0] for r in await conn.execute(candidates)]
            if not ids:
                return []
            await conn.execute(update(campaigns).where(campaigns.c.id.in_(ids)).values(
                lease_owner=self.owner, lease_until=lease_until))
            return list((await conn.execute(select(campaigns).where(campaigns.c.id.in_(ids))
                                            .order_by(campaigns.c.created_at))).mappings().all())

    async def count_active(self) -> None:
        """The active-campaigns gauge, by status (every replica reports the same figures)."""
        async with self.store.engine.connect() as conn:
            counts = dict((await conn.execute(select(campaigns.c.status, func.count()).where(
                campaigns.c.status.in_(list(lifecycle.ACTIVE))).group_by(campaigns.c.status))).all())
        for st in lifecycle.ACTIVE:
            ACTIVE.labels(st).set(counts.get(st, 0))
