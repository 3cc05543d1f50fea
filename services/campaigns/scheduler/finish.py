"""Messages that will never be handed to a gateway (cancelled campaign, expired window, a job
that can never be published) move from QUEUED to a final status, announced on the bus."""

from __future__ import annotations

from typing import Any

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from sqlalchemy import select, update

from services.campaigns.scheduler.base import JobBase
from services.campaigns.schema import messages
from shared import bus, states
from shared.timeutil import to_ts

S = c.MessageStatus


class FinishMixin(JobBase):
    async def cancel_queued(self, campaign_id: str) -> None:
        """After a cancel: messages not yet handed to a gateway become CANCELLED."""
        await self._finish_undispatched(campaign_id, S.MESSAGE_STATUS_CANCELLED,
                                        e.MESSAGE_EVENT_KIND_CANCELLED, 0, "")

    async def fail_undispatched(self, row: Any, reason: str) -> None:
        await self._finish_undispatched(row["id"], S.MESSAGE_STATUS_FAILED, e.MESSAGE_EVENT_KIND_FAILED,
                                        c.FAILURE_CATEGORY_EXPIRED, reason)

    async def _finish_undispatched(self, campaign_id: str, status: int, kind: int, category: int,
                                   reason: str) -> None:
        async with self.store.engine.connect() as conn:
            ids = [r[0] for r in await conn.execute(select(messages.c.id).where(
                messages.c.campaign_id == campaign_id, messages.c.dispatched_at.is_(None),
                messages.c.status == S.MESSAGE_STATUS_QUEUED))]
        await self._finish(campaign_id, ids, status, kind, category, reason)

    async def _finish(self, campaign_id: str, ids: list[str], status: int, kind: int, category: int,
                      reason: str) -> None:
        """Move these messages, if still QUEUED, to a final status and announce it."""
        now = self.clock.now()
        moved: list[tuple[str, int]] = []
        async with self.store.engine.begin() as conn:
            row = await self.store.get_row(conn, campaign_id, None)
            for i in range(0, len(ids), 1000):
                chunk = (messages.c.id.in_(ids[i:i + 1000]), messages.c.status == S.MESSAGE_STATUS_QUEUED)
                moved += [(r.id, r.attempt) for r in await conn.execute(
                    select(messages.c.id, messages.c.attempt).where(*chunk))]
                await conn.execute(update(messages).where(*chunk).values(
                    status=status, status_rank=states.RANK[status], failure_category=category,
                    error_description=reason, updated_at=now))
        if row is None or not moved:
            return
        events = []
        name = states.kind_name(kind)
        for mid, attempt in moved:
            # A retried message's outcome is a new fact: its id names the attempt.
            event_id = f"{mid}:{name}" if attempt <= 1 else f"{mid}:{name}:{attempt}"
            ev = e.MessageEvent(event_id=event_id, kind=kind, message_id=mid, attempt=attempt,
                                campaign_id=campaign_id, workspace_id=row["workspace_id"],
                                channel=row["channel"], status=status, occurred_at=to_ts(now),
                                failure_category=category, error_description=reason)
            events.append((states.message_subject(kind), ev, ev.event_id))
        await bus.publish_many(self.js, events)
