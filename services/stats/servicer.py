"""StatsService: reads the Redis aggregates, scoped to the caller's workspace."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from herald.v1 import stats_pb2 as pb
from herald.v1 import stats_pb2_grpc as pb_grpc

from services.stats.aggregator import Aggregator
from services.stats.metrics import WATCHERS
from shared import auth
from shared.errors import invalid, not_found

MAX_BATCH_IDS = 1000
DEFAULT_INTERVAL_MS = 1000
MIN_INTERVAL_MS = 100

_COUNTER_FIELDS = (
    "total", "sent", "delivered", "failed", "viewed", "clicked", "views", "clicks",
    "machine_opens", "replies", "opted_out", "assumed_delivered", "deferred", "sending",
    "queued", "submitted", "cancelled", "processed",
)


def _rate(num: int, den: int) -> float:
    return num / den if den else 0.0


def campaign_stats(campaign_id: str, counters: dict[str, int]) -> pb.CampaignStats:
    st = pb.CampaignStats(campaign_id=campaign_id, **{f: counters[f] for f in _COUNTER_FIELDS})
    st.delivery_rate = _rate(st.delivered, st.sent)
    st.reply_rate = _rate(st.replies, st.sent)
    st.click_rate = _rate(st.clicked, st.sent)
    st.open_rate = _rate(st.viewed, st.sent)
    return st


def _visible(owner: str) -> bool:
    """Unknown campaigns/messages (no owner yet) read as zeros; others' are invisible."""
    p = auth.current()
    return not owner or p.master or owner == p.workspace


def _owns(owner: str) -> bool:
    """A message is visible only to its own workspace (or master), never when ownerless."""
    p = auth.current()
    return p.master or (bool(owner) and owner == p.workspace)


class StatsServicer(pb_grpc.StatsServiceServicer):
    def __init__(self, agg: Aggregator, stop: asyncio.Event | None = None) -> None:
        self.agg = agg
        # Set on shutdown: open watch streams end cleanly instead of holding the grace period.
        self.stop = stop or asyncio.Event()

    async def _campaign(self, campaign_id: str) -> pb.CampaignStats:
        counters, owner = await self.agg.campaign(campaign_id)
        if not _visible(owner):
            raise not_found("campaign", campaign_id)
        st = campaign_stats(campaign_id, counters)
        for name, v in (await self.agg.variants(campaign_id)).items():
            st.variants.append(pb.VariantStats(
                variant=name, total=v["total"], sent=v["sent"], delivered=v["delivered"],
                failed=v["failed"], replies=v["replies"], viewed=v["viewed"], clicked=v["clicked"],
                delivery_rate=_rate(v["delivered"], v["sent"]), reply_rate=_rate(v["replies"], v["sent"]),
                click_rate=_rate(v["clicked"], v["sent"]), open_rate=_rate(v["viewed"], v["sent"])))
        return st

    async def GetCampaignStats(self, request: pb.GetCampaignStatsRequest,
                               context: grpc.aio.ServicerContext) -> pb.CampaignStats:
        if not request.campaign_id:
            raise invalid({"campaign_id": "required"})
        return await self._campaign(request.campaign_id)

    async def WatchCampaignStats(self, request: pb.WatchCampaignStatsRequest,
                                 context: grpc.aio.ServicerContext) -> AsyncIterator[pb.CampaignStats]:
        if not request.campaign_id:
            raise invalid({"campaign_id": "required"})
        if request.interval_ms < 0:
            raise invalid({"interval_ms": "must not be negative"})
        interval = max(request.interval_ms or DEFAULT_INTERVAL_MS, MIN_INTERVAL_MS) / 1000
        last: pb.CampaignStats | None = None
        # Runs until the client cancels (CancelledError) or the server shuts down. The
        # ownership check repeats on every poll: a campaign unknown at the start may turn
        # out to belong to another workspace once its first event arrives.
        while not self.stop.is_set():
            st = await self._campaign(request.campaign_id)
            if st != last:
                last = st
                WATCHERS.inc()
                yield st
            try:
                await asyncio.wait_for(self.stop.wait(), interval)
            except TimeoutError:
                pass

    async def GetWorkspaceStats(self, request: pb.GetWorkspaceStatsRequest,
                                context: grpc.aio.ServicerContext) -> pb.WorkspaceStats:
        ws = auth.current().workspace
        cnt = await self.agg.workspace(ws)
        return pb.WorkspaceStats(workspace_id=ws, messages_total=cnt["total"],
                                 messages_sent=cnt["sent"], messages_delivered=cnt["delivered"],
                                 messages_failed=cnt["failed"])

    async def BatchGetMessageStates(self, request: pb.BatchGetMessageStatesRequest,
                                    context: grpc.aio.ServicerContext
                                    ) -> pb.BatchGetMessageStatesResponse:
        if len(request.message_ids) > MAX_BATCH_IDS:
            raise invalid({"message_ids": f"at most {MAX_BATCH_IDS} ids per call "
                                          f"(got {len(request.message_ids)})"})
        ids = list(dict.fromkeys(m for m in request.message_ids if m))
        found = await self.agg.message_states(ids)
        return pb.BatchGetMessageStatesResponse(states=[
            pb.MessageState(message_id=s.message_id, status=s.status, views=s.views,
                            clicks=s.clicks, replies=s.replies)
            for s in found if _owns(s.workspace)])
