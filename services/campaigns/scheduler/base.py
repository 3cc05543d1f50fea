"""What every scheduler job shares: its state (store, bus, clock, settings), the campaign
transition (compare-and-set, announced on the bus) and the Errors tab's job errors."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from herald.v1 import events_pb2 as e
from herald.v1 import recipients_pb2_grpc as rgrpc
from nats.js import JetStreamContext
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncConnection

from services.campaigns.publishing import BatchPublisher
from services.campaigns.repo import job_errors
from services.campaigns.store import Store
from shared import bus
from shared.timeutil import Clock, to_ts

log = logging.getLogger("herald.campaigns.scheduler")

CAMPAIGN_TRANSITIONS = Counter("herald_campaigns_transitions_total",
                               "Campaign state changes made by the scheduler.", ["to"])
SCHEDULER_ERRORS = Counter("herald_campaigns_scheduler_errors_total",
                           "Scheduler failures, by stage (tick, step, build, exports, assumed_sweep); each "
                           "is logged with its cause and retried on a later tick.", ["stage"])


def describe(exc: BaseException) -> str:
    """An exception as a log field: its type and text (some have an empty str())."""
    return f"{type(exc).__name__}: {exc}"


class JobBase:
    """State and helpers of the Scheduler that every job mixin uses."""

    store: Store
    js: JetStreamContext
    publisher: BatchPublisher
    recipients: rgrpc.RecipientServiceStub
    clock: Clock
    interval: float
    batch: int
    job_ttl: float
    lease: float
    auto_pause: int
    owner: str
    export_ttl: float
    max_payload: int
    assumed_after: float
    assumed_sweep: float
    sweep_at: datetime | None
    sweep_cursor: str
    exports_at: datetime | None
    buckets: dict[str, tuple[float, float]]
    wake: asyncio.Event  # set: the next tick runs now instead of after the interval

    def building(self) -> set[str]:
        """Campaigns whose build this replica runs now (scheduler.builds)."""
        return set()

    async def transition(self, campaign_id: str, target: str, reason: str,
                         also: Callable[[AsyncConnection], Awaitable[None]] | None = None,
                         **values: Any) -> Any:
        """Move the campaign (compare-and-set) and run `also` in the same transaction."""
        now = self.clock.now()
        async with self.store.write() as conn:
            row = await self.store.get_row(conn, campaign_id, None, for_update=True)
            previous = row["status"]
            if row["status"] != target:
                await Store.set_status(conn, row, target, reason, "scheduler", now, **values)
            if also is not None:
                await also(conn)
            row = await self.store.get_row(conn, campaign_id, None)
        CAMPAIGN_TRANSITIONS.labels(target).inc()
        event_id = str(uuid.uuid4())
        await bus.publish(self.js, "events.campaign.status_changed", e.CampaignEvent(
            event_id=event_id, kind=e.CAMPAIGN_EVENT_KIND_STATUS_CHANGED,
            campaign_id=campaign_id, workspace_id=row["workspace_id"], status=target,
            previous_status=previous, reason=reason, occurred_at=to_ts(now), actor="scheduler",
            total_messages=row["recipients_count"]), event_id)
        return row

    async def record_error(self, row: Any, stage: str, message: str) -> bool:
        """Errors tab, Job sub-tab. Repeats of the same error are not stored again; returns
        whether this one was new."""
        async with self.store.write() as conn:
            if await job_errors.last_message(conn, row["id"]) != message:
                await job_errors.add(conn, row, stage, message, self.clock.now())
                return True
        return False
