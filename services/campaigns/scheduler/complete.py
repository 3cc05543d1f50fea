"""Completion: DONE once every message is final, auto-pause after consecutive failures (only
while messages remain to send), and the end time (TRIGGER campaigns finish, others expire)."""

from __future__ import annotations

from typing import Any

from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c

from services.campaigns import lifecycle
from services.campaigns.repo import messages as messages_repo
from services.campaigns.scheduler.base import log
from services.campaigns.scheduler.finish import FinishMixin
from shared.timeutil import aware

S = c.MessageStatus
# error_codes of FAILED outcomes that say nothing about the route: the carrier may have the
# message but its answer never came back. ABANDONED: a gateway crashed (or Redis lost its send
# markers) before recording it; CONNECTION_LOST: the SMPP connection dropped before
# submit_sm_resp (a window of these at once, after which the gateway reconnects and sends on).
UNKNOWN_OUTCOME_CODES = ("ABANDONED", "CONNECTION_LOST")


class CompleteMixin(FinishMixin):
    async def maybe_complete(self, row: Any) -> None:
        cid = row["id"]
        async with self.store.read() as conn:
            left = await messages_repo.any_unsettled(conn, cid)
        if not left:
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
        async with self.store.read() as conn:
            waiting = await messages_repo.waiting_count(conn, cid)
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
        # Outcomes the carrier never answered (UNKNOWN_OUTCOME_CODES) say nothing about the
        # route: they neither count as failures nor break a streak. Before, one dropped SMPP
        # connection failed its window of in-flight messages at once and paused the campaign.
        async with self.store.read() as conn:
            last = await messages_repo.last_outcomes(conn, row["id"], n, since, UNKNOWN_OUTCOME_CODES)
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
        async with self.store.read() as conn:
            return await messages_repo.any_to_send(conn, campaign_id)
