"""Completion: DONE once every message is final, auto-pause after consecutive failures (only
while messages remain to send), and the end time (TRIGGER campaigns finish, others expire)."""

from __future__ import annotations

from typing import Any

from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from sqlalchemy import and_, func, select

from services.campaigns import lifecycle
from services.campaigns.scheduler.base import log
from services.campaigns.scheduler.finish import FinishMixin
from services.campaigns.schema import messages
from shared import states
from shared.timeutil import aware

S = c.MessageStatus
# error_code the gateways give a message that may have been accepted but was not recorded.
ABANDONED_CODE = "ABANDONED"


def unsettled_condition() -> Any:
    final = list(states.FINAL)
    return and_(messages.c.status.not_in(final),
                ~and_(messages.c.channel == c.CHANNEL_EMAIL,
                      messages.c.status == S.MESSAGE_STATUS_SUBMITTED))


class CompleteMixin(FinishMixin):
    async def maybe_complete(self, row: Any) -> None:
        cid = row["id"]
        async with self.store.engine.connect() as conn:
            left = (await conn.execute(select(func.count()).select_from(messages).where(
                messages.c.campaign_id == cid, unsettled_condition()))).scalar_one()
        if left == 0:
            await self.transition(cid, lifecycle.DONE, "all messages final",
                                  completed_at=self.clock.now())
            log.info("campaign done", extra={"campaign_id": cid})

    async def end_reached(self, row: Any) -> None:
        """end_at passed: a TRIGGER campaign is done; any other campaign expires if messages
        were still waiting to be sent (they fail as EXPIRED), else it completes normally."""
        cid, now = row["id"], self.clock.now()
        if row["mode"] == pb.CAMPAIGN_MODE_TRIGGER and row["status"] != lifecycle.PENDING:
            await self.fail_undispatched(row, "campaign ended before this message was sent")
            await self.transition(cid, lifecycle.DONE, "trigger campaign reached its end",
                                  completed_at=now)
            return
        async with self.store.engine.connect() as conn:
            waiting = (await conn.execute(select(func.count()).select_from(messages).where(
                messages.c.campaign_id == cid, messages.c.dispatched_at.is_(None),
                messages.c.status == S.MESSAGE_STATUS_QUEUED))).scalar_one()
        if row["status"] == lifecycle.PENDING or waiting:
            await self.fail_undispatched(row, "campaign window ended before this message was sent")
            await self.transition(cid, lifecycle.EXPIRED, "end time passed before completion",
                                  completed_at=now)
        elif row["status"] == lifecycle.SENDING:
            await self.maybe_complete(row)

    async def too_many_failures(self, row: Any) -> bool:
        """Auto-pause after N consecutive failed messages (default 5): a broken route or an
        expired account should not burn the whole audience. Only while messages remain to be
        sent: a campaign with nothing left to hand over completes instead (maybe_complete),
        whatever its last outcomes were. An auto-pause is never lifted by the scheduler: the
        failures mean something is broken (route, account, content) that only a person can
        fix, and resuming by itself would burn the next N messages on the same fault."""
        n = row["auto_pause_failures"] or self.auto_pause
        if n <= 0:
            return False
        since = aware(row["failures_reset_at"]) or aware(row["started_at"])
        # ABANDONED outcomes (a gateway crash or lost send markers: the carrier may have
        # accepted the message) say nothing about the route: they neither count as failures
        # nor break a streak.
        q = (select(messages.c.status).where(
            messages.c.campaign_id == row["id"], messages.c.dispatched_at.is_not(None),
            messages.c.status_rank >= states.RANK[S.MESSAGE_STATUS_ASSUMED_DELIVERED],
            messages.c.updated_at.is_not(None), messages.c.error_code != ABANDONED_CODE)
            .order_by(messages.c.updated_at.desc()).limit(n))
        if since is not None:
            q = q.where(messages.c.updated_at > since)
        async with self.store.engine.connect() as conn:
            last = [r[0] for r in await conn.execute(q)]
        if len(last) < n or any(st != S.MESSAGE_STATUS_FAILED for st in last):
            return False
        if not await self.left_to_send(row["id"]):
            return False
        await self.transition(
            row["id"], lifecycle.PAUSED,
            f"auto-paused after {n} consecutive failures; it does not resume by itself: fix the "
            f"cause (route, account, content), then resume it (ResumeCampaign, or "
            f"`herald resume {row['id']}`)", paused_by="failures")
        log.warning("campaign auto-paused", extra={"campaign_id": row["id"], "failures": n})
        return True

    async def left_to_send(self, campaign_id: str) -> bool:
        """Whether any message still waits to be handed to a gateway (A/B-held ones wait for
        the winner, not for this campaign's route)."""
        async with self.store.engine.connect() as conn:
            return (await conn.execute(select(messages.c.id).where(
                messages.c.campaign_id == campaign_id, messages.c.status == S.MESSAGE_STATUS_QUEUED,
                messages.c.dispatched_at.is_(None), messages.c.held.is_(False)).limit(1))).first() is not None
