"""StatsService: reads the Redis aggregates, scoped to the caller's workspace. A campaign
is answered only once its owner is known (events or CampaignService): unknown or another
workspace's is NOT_FOUND, never zeros. RebuildCampaignStats rewrites a campaign's aggregates
from the ledger (services.stats.rebuilder). WatchCampaignStats ends by itself once the
campaign's figures are final (terminal status, nothing in flight, the consumer caught up)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
from herald.v1 import stats_pb2 as pb
from herald.v1 import stats_pb2_grpc as pb_grpc

from services.stats import campaign_status
from services.stats.aggregator import Aggregator, CampaignRecord
from services.stats.catchup import CatchUp
from services.stats.directory import CampaignDirectory
from services.stats.metrics import REBUILDS, WATCHERS
from services.stats.rebuilder import Rebuilder
from shared import auth, validate
from shared.errors import HeraldError, invalid, not_found

log = logging.getLogger("herald.stats.servicer")
MAX_BATCH_IDS = 1000
MAX_REPORTED = 20  # field violations listed for one bad batch (the first ones)
DEFAULT_INTERVAL_MS = 1000
MIN_INTERVAL_MS = 100  # shorter intervals are raised to this (the stream is "at most every")
MAX_INTERVAL_MS = 3_600_000
LEARN_EVERY = 30.0  # seconds between a watch's lookups of a lifecycle status stats lacks

_COUNTER_FIELDS = (
    "total", "sent", "delivered", "failed", "viewed", "clicked", "views", "clicks",
    "machine_opens", "replies", "opted_out", "assumed_delivered", "deferred", "sending",
    "queued", "submitted", "cancelled", "processed",
)
# Messages whose status may still change by themselves (a gateway or a receipt moves them).
IN_FLIGHT = ("queued", "sending", "submitted", "deferred")


def _rate(num: int, den: int) -> float:
    return num / den if den else 0.0


def settled(status: int, counters: dict[str, int]) -> bool:
    """Terminal campaign, no message in flight (the figures cannot move by themselves)."""
    return campaign_status.is_terminal(status) and not any(counters[f] for f in IN_FLIGHT)


def campaign_stats(campaign_id: str, counters: dict[str, int], status: int = 0,
                   final: bool = False) -> pb.CampaignStats:
    st = pb.CampaignStats(campaign_id=campaign_id, campaign_status=status, final=final,
                          **{f: counters[f] for f in _COUNTER_FIELDS})
    st.delivery_rate = _rate(st.delivered, st.sent)
    st.reply_rate = _rate(st.replies, st.sent)
    st.click_rate = _rate(st.clicked, st.sent)
    st.open_rate = _rate(st.viewed, st.sent)
    return st


def _owns(owner: str) -> bool:
    """A campaign or message is visible to its own workspace (or master), never when ownerless."""
    p = auth.current()
    return p.master or (bool(owner) and owner == p.workspace)


def _campaign_id(value: str) -> str:
    if not value:
        raise invalid({"campaign_id": "required"})
    bad = validate.uuid_text(value)
    if bad:
        raise invalid({"campaign_id": bad})
    return value.lower()  # ids are stored in canonical (lower-case) form


def _caller_token(context: grpc.aio.ServicerContext) -> str | None:
    """A master's own bearer token, forwarded so CampaignService also lets it read across
    workspaces; everyone else is looked up with the service token in their workspace."""
    if not auth.current().master:
        return None
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str) and value.lower().startswith("bearer "):
            return value[7:].strip()
    return None


def _interval(ms: int) -> float:
    if ms < 0:
        raise invalid({"interval_ms": "must not be negative"})
    if ms > MAX_INTERVAL_MS:
        raise invalid({"interval_ms": f"at most {MAX_INTERVAL_MS}"})
    return max(ms or DEFAULT_INTERVAL_MS, MIN_INTERVAL_MS) / 1000


def _message_ids(ids: list[str]) -> list[str]:
    if len(ids) > MAX_BATCH_IDS:
        raise invalid({"message_ids": f"at most {MAX_BATCH_IDS} ids per call (got {len(ids)})"})
    bad: dict[str, str] = {}
    for i, mid in enumerate(ids):
        why = validate.uuid_text(mid)
        if why and len(bad) < MAX_REPORTED:
            bad[f"message_ids[{i}]"] = why
    if bad:
        raise invalid(bad)
    return list(dict.fromkeys(m.lower() for m in ids))


class StatsServicer(pb_grpc.StatsServiceServicer):
    def __init__(self, agg: Aggregator, directory: CampaignDirectory,
                 stop: asyncio.Event | None = None, rebuilder: Rebuilder | None = None,
                 consumer_position: CatchUp | None = None) -> None:
        self.agg = agg
        self.directory = directory
        self.rebuilder = rebuilder
        # Tells whether the message consumer applied the events before a terminal status
        # (None: in-process servers without a bus consumer; the counters are taken as they are).
        self.consumer_position = consumer_position
        # Set on shutdown: open watch streams end cleanly instead of holding the grace period.
        self.stop = stop or asyncio.Event()

    async def _record(self, campaign_id: str, context: grpc.aio.ServicerContext,
                      learn: bool = True) -> CampaignRecord:
        """The campaign's record, its owner checked. With learn, a campaign whose lifecycle
        status stats has not seen yet is looked up in CampaignService (recorded: events keep
        it from then on)."""
        rec = await self.agg.campaign_record(campaign_id)
        owner = rec.owner
        if not owner:
            owner = await self.directory.owner(campaign_id, token=_caller_token(context),
                                               deadline=context.time_remaining())
        if not _owns(owner):
            raise not_found("campaign", campaign_id)
        if learn and rec.owner and not rec.status:
            try:
                await self.directory.learn(campaign_id, token=_caller_token(context),
                                           deadline=context.time_remaining())
            except HeraldError as err:  # the counters still stand; the status stays unknown
                log.info("campaign status unknown", extra={
                    "campaign_id": campaign_id, "code": err.code.name, "error": str(err)})
        if not rec.owner or (learn and not rec.status):  # a lookup may have recorded more
            rec = await self.agg.campaign_record(campaign_id)
        return rec

    async def _final(self, rec: CampaignRecord) -> bool:
        if not settled(rec.status, rec.counters):
            return False
        if self.consumer_position is None:
            return True
        try:
            return await self.consumer_position.applied_through(rec.status_seq)
        except Exception:  # the bus is away: not final yet, asked again at the next read
            return False

    async def _campaign(self, campaign_id: str, context: grpc.aio.ServicerContext,
                        learn: bool = True) -> pb.CampaignStats:
        rec = await self._record(campaign_id, context, learn)
        st = campaign_stats(campaign_id, rec.counters, rec.status, await self._final(rec))
        for name, v in (await self.agg.variants(campaign_id)).items():
            st.variants.append(pb.VariantStats(
                variant=name, total=v["total"], sent=v["sent"], delivered=v["delivered"],
                failed=v["failed"], replies=v["replies"], viewed=v["viewed"], clicked=v["clicked"],
                delivery_rate=_rate(v["delivered"], v["sent"]), reply_rate=_rate(v["replies"], v["sent"]),
                click_rate=_rate(v["clicked"], v["sent"]), open_rate=_rate(v["viewed"], v["sent"])))
        return st

    async def GetCampaignStats(self, request: pb.GetCampaignStatsRequest,
                               context: grpc.aio.ServicerContext) -> pb.CampaignStats:
        return await self._campaign(_campaign_id(request.campaign_id), context)

    async def WatchCampaignStats(self, request: pb.WatchCampaignStatsRequest,
                                 context: grpc.aio.ServicerContext) -> AsyncIterator[pb.CampaignStats]:
        campaign_id = _campaign_id(request.campaign_id)
        interval = _interval(request.interval_ms)
        last: pb.CampaignStats | None = None
        # Runs until the snapshot that is final (sent, then the stream ends OK), the client
        # cancels (CancelledError) or the server shuts down. The ownership check repeats on
        # every poll (it reads the same Redis hash as the counters).
        loop = asyncio.get_running_loop()
        learnt_at = -LEARN_EVERY  # status lookups: at the first poll, then rarely while unknown
        while not self.stop.is_set():
            learn = loop.time() - learnt_at >= LEARN_EVERY
            st = await self._campaign(campaign_id, context, learn)
            if learn:
                learnt_at = loop.time()
            if st != last:
                last = st
                WATCHERS.inc()
                yield st
            if st.final:
                return
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
        ids = _message_ids(list(request.message_ids))
        found = await self.agg.message_states(ids)
        return pb.BatchGetMessageStatesResponse(states=[
            pb.MessageState(message_id=s.message_id, status=s.status, views=s.views,
                            clicks=s.clicks, replies=s.replies)
            for s in found if _owns(s.workspace)])

    async def RebuildCampaignStats(self, request: pb.RebuildCampaignStatsRequest,
                                   context: grpc.aio.ServicerContext) -> pb.CampaignStats:
        if self.rebuilder is None:  # a server built without the ledger reader
            raise HeraldError(grpc.StatusCode.UNIMPLEMENTED, "rebuild is not configured here")
        try:
            auth.current().require("operator", "service")
            campaign_id = _campaign_id(request.campaign_id)
        except HeraldError:
            REBUILDS.labels("refused").inc()
            raise
        try:
            owner = await self.directory.owner(campaign_id, token=_caller_token(context),
                                               deadline=context.time_remaining())
            if not _owns(owner):
                raise not_found("campaign", campaign_id)
        except HeraldError as err:
            REBUILDS.labels("not_found" if err.code == grpc.StatusCode.NOT_FOUND
                            else "ledger_unavailable").inc()
            raise
        await self.rebuilder.run(campaign_id, owner)
        return await self._campaign(campaign_id, context)
