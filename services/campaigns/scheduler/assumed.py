"""The assumed-delivery sweep: SMS left SUBMITTED longer than HERALD_ASSUMED_DELIVERED_AFTER
are reported ASSUMED_DELIVERED. The schedule lives in SQL, so nothing held in Redis or a
gateway is needed to finish a campaign whose receipts never came."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from prometheus_client import Counter

from services.campaigns import lifecycle
from services.campaigns.repo import messages as messages_repo
from services.campaigns.scheduler.base import SCHEDULER_ERRORS, JobBase, describe, log
from shared import bus, states
from shared.timeutil import to_ts

S = c.MessageStatus
ASSUMED = Counter("herald_campaigns_assumed_delivered_total",
                  "SMS the ledger sweep reported ASSUMED_DELIVERED (SUBMITTED for longer than "
                  "HERALD_ASSUMED_DELIVERED_AFTER without a final receipt).")
SWEEP_PAGE = 1000  # messages per assumed-delivery query and publish batch
SWEEP_PAGES = 20  # pages per sweep; a larger backlog carries on at the next tick
# A DONE campaign has no SMS left SUBMITTED (maybe_complete counts them as unsettled), except
# a TRIGGER campaign, which is DONE when its end time passes; any campaign that was sending
# and stopped otherwise may still have some with the carrier.
SWEPT = [lifecycle.SENDING, lifecycle.PAUSED, lifecycle.CANCELLED, lifecycle.FAILED, lifecycle.EXPIRED]


class AssumedMixin(JobBase):
    async def maybe_sweep_assumed(self, now: datetime) -> None:
        """Every assumed_sweep seconds, or on the next tick while a sweep is unfinished."""
        if self.assumed_after > 0 and (self.sweep_cursor or self.sweep_at is None
                                       or (now - self.sweep_at).total_seconds() >= self.assumed_sweep):
            self.sweep_at = now
            try:
                await self.sweep_assumed(now)
            except Exception as exc:
                SCHEDULER_ERRORS.labels("assumed_sweep").inc()
                log.warning("assumed-delivery sweep failed", extra={"error": describe(exc)})

    async def sweep_assumed(self, now: datetime) -> int:
        """SMS SUBMITTED (in the ledger) for longer than assumed_after: publish
        ASSUMED_DELIVERED for them; the ledger consumer and stats apply it (a later receipt
        still moves the message to DELIVERED or FAILED). The ledger is only changed by the
        consumer, so a crash between query and publish loses nothing: the next sweep finds
        the same rows. Ids are deterministic, so a repeat is dropped. Cheap: only campaigns
        that may still have SMS with the carrier, through the (campaign_id, status) index."""
        cutoff = now - timedelta(seconds=self.assumed_after)
        published = 0
        for _ in range(SWEEP_PAGES):
            async with self.store.read() as conn:
                page = await messages_repo.submitted_sms_page(conn, SWEPT, cutoff, self.sweep_cursor,
                                                              SWEEP_PAGE)
            items: list[tuple[str, Any, str]] = []
            for m in page:
                key = f"{m.id}:assumed:{m.attempt}"
                ev = e.MessageEvent(
                    event_id=key, kind=e.MESSAGE_EVENT_KIND_ASSUMED_DELIVERED,
                    status=S.MESSAGE_STATUS_ASSUMED_DELIVERED, message_id=m.id,
                    campaign_id=m.campaign_id, workspace_id=m.workspace_id, channel=m.channel,
                    attempt=m.attempt, occurred_at=to_ts(now), to=m.address, variant=m.variant,
                    route=m.route)
                items.append((states.message_subject(ev.kind), ev, key))
            if items:
                await bus.publish_many(self.js, items)
                ASSUMED.inc(len(items))
                published += len(items)
            if len(page) < SWEEP_PAGE:
                self.sweep_cursor = ""
                break
            self.sweep_cursor = page[-1].id
        if published:
            log.info("assumed delivery reported", extra={"messages": published,
                                                         "after_seconds": self.assumed_after})
        return published
