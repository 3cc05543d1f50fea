"""Messages that will never be handed to a gateway (cancelled campaign, expired window, a job
that can never be published) move from QUEUED to a final status, announced on the bus."""

from __future__ import annotations

from typing import Any

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from services.campaigns.repo import messages as messages_repo
from services.campaigns.scheduler.base import JobBase
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
        async with self.store.read() as conn:
            ids = await messages_repo.waiting_ids(conn, campaign_id)
        await self._finish(campaign_id, ids, status, kind, category, reason)

    async def _finish(self, campaign_id: str, ids: list[str], status: int, kind: int, category: int,
                      reason: str) -> None:
        """Move these messages, if still QUEUED, to a final status and announce it."""
        now = self.clock.now()
        async with self.store.write() as conn:
            row = await self.store.get_row(conn, campaign_id, None)
            moved = await messages_repo.finish_queued(conn, ids, status, category, reason, now)
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
