"""ReconcileCampaign: the ledger (the record) beside the stats service, message by message.

The operator's proof that a campaign's figures are final: both Progress columns, every
message whose state the two disagree on (the first max_differences listed, all counted),
and `final` once nothing is left in flight and nothing differs. With repair, the stats of
the campaign are first rebuilt from the ledger (StatsService.RebuildCampaignStats).

The ledger's Progress here is counted from the ledger's rows themselves, and compared with
the campaign's message_counts (what GetCampaign and ListCampaigns read): a difference is
logged and counted, and with repair the counts are rebuilt from the ledger.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from herald.v1 import stats_pb2 as spb
from herald.v1 import stats_pb2_grpc as sgrpc
from prometheus_client import Counter

from services.campaigns.repo import message_updates
from services.campaigns.repo import messages as messages_repo
from services.campaigns.store import Store
from services.campaigns.validation import required_uuid
from shared import auth, states, validate
from shared.errors import HeraldError, invalid, not_found
from shared.idempotency import fingerprint
from shared.timeutil import Clock

log = logging.getLogger("herald.campaigns.reconcile")
S = c.MessageStatus

PAGE = 1000  # ledger rows per page = ids per BatchGetMessageStates call (its limit)
DEFAULT_DIFFERENCES, MAX_DIFFERENCES = 100, 1000
CALL_TIMEOUT = 10.0      # seconds per stats read
REBUILD_TIMEOUT = 120.0  # a rebuild reads the whole campaign from the ledger
# Codes that mean "the stats service could not be asked" rather than "it answered no".
UNREACHABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
               grpc.StatusCode.CANCELLED, grpc.StatusCode.RESOURCE_EXHAUSTED}

RECONCILES = Counter("herald_campaigns_reconciliations_total",
                     "ReconcileCampaign calls answered, by result (final, not_final, repaired: "
                     "stats rebuilt first, unavailable: stats could not be asked).", ["result"])

COUNTS_DRIFT = Counter("herald_campaigns_message_counts_drift_total",
                       "ReconcileCampaign calls that found a campaign's message counts (what its "
                       "progress reads) differing from its ledger, by action (reported, repaired).",
                       ["action"])

# CampaignStats field -> Progress field (same definitions; only "errors" is named apart).
PROGRESS_FROM_STATS = {
    "total": "total", "processed": "processed", "sent": "sent", "delivered": "delivered",
    "failed": "errors", "opted_out": "opted_out", "queued": "queued", "sending": "sending",
    "submitted": "submitted", "assumed_delivered": "assumed_delivered", "deferred": "deferred",
    "cancelled": "cancelled",
}


def to_progress(st: spb.CampaignStats) -> pb.Progress:
    return pb.Progress(**{p: getattr(st, s) for s, p in PROGRESS_FROM_STATS.items()})


def stats_error(exc: grpc.aio.AioRpcError, what: str) -> HeraldError:
    """The stats service's failure as this RPC's: unreachable is UNAVAILABLE (retry)."""
    if exc.code() in UNREACHABLE:
        RECONCILES.labels("unavailable").inc()
        log.warning("stats service unavailable", extra={
            "call": what, "error": f"{exc.code().name}: {exc.details()}"})
        return HeraldError(grpc.StatusCode.UNAVAILABLE,
                           f"the stats service did not answer {what} ({exc.code().name}); retry")
    return HeraldError(exc.code(), f"stats service, {what}: {exc.details()}")


def differs(ledger: int, stats: int, held: bool) -> bool:
    """A held A/B message waits QUEUED for the winner and is announced only when promoted: the
    stats service not knowing it yet is no difference."""
    if held and ledger == S.MESSAGE_STATUS_QUEUED and stats == S.MESSAGE_STATUS_UNSPECIFIED:
        return False
    return ledger != stats


class Reconciler:
    def __init__(self, store: Store, stats: sgrpc.StatsServiceStub | None,
                 clock: Clock | None = None) -> None:
        self.store = store
        self.stats = stats
        self.clock = clock or Clock()

    def _timeout(self, context: Any, default: float) -> float:
        """The caller's deadline when it is shorter than ours."""
        left = context.time_remaining() if context is not None else None
        return default if left is None else max(min(default, left), 0.05)

    async def reconcile(self, request: pb.ReconcileCampaignRequest, context: Any) -> pb.ReconcileReport:
        p = auth.current()
        bad = {f: why for f, why in (("campaign_id", required_uuid(request.campaign_id)),
                                     ("request_id", validate.request_id(request.request_id))) if why}
        if request.max_differences < 0:
            bad["max_differences"] = "must not be negative"
        if bad:
            raise invalid(bad)
        limit = min(request.max_differences or DEFAULT_DIFFERENCES, MAX_DIFFERENCES)
        fp = ""
        if request.repair:
            p.require("operator")
            fp = fingerprint("ReconcileCampaign", request)
            prev = await self.store.replay(p.workspace, "ReconcileCampaign", request.request_id,
                                           pb.ReconcileReport, fp)
            if prev is not None:
                return prev
        cid = request.campaign_id.lower()
        async with self.store.read() as conn:
            row = await self.store.get_row(conn, cid, None if p.master else p.workspace)
        if row is None:
            raise not_found("campaign", request.campaign_id)
        if self.stats is None:
            raise HeraldError(grpc.StatusCode.UNAVAILABLE, "no stats service configured")
        md = auth.call_metadata(workspace=row["workspace_id"])
        report = pb.ReconcileReport(campaign_id=cid)
        report.ledger.CopyFrom(await self._check_counts(cid, request.repair))
        if request.repair:
            try:
                await self.stats.RebuildCampaignStats(spb.RebuildCampaignStatsRequest(campaign_id=cid),
                                                      metadata=md, timeout=self._timeout(context, REBUILD_TIMEOUT))
            except grpc.aio.AioRpcError as exc:
                raise stats_error(exc, "RebuildCampaignStats") from None
            report.repaired = True
            log.info("campaign stats rebuilt from the ledger", extra={"campaign_id": cid, "actor": p.name})
        await self._compare(report, cid, md, limit, context)
        RECONCILES.labels("repaired" if request.repair else "final" if report.final else "not_final").inc()
        if request.repair:
            async with self.store.write() as conn:
                await self.store.remember(conn, p.workspace, "ReconcileCampaign", request.request_id,
                                          report, self.clock.now(), fp)
        return report

    async def _check_counts(self, cid: str, repair: bool) -> pb.Progress:
        """The campaign's progress counted from its ledger rows, beside its message_counts read
        in the same snapshot (PostgreSQL: a repeatable read, or every counter writer held off
        while repairing; SQLite: its write lock). A difference is logged; repair rebuilds them."""
        async with self.store.engine.connect() as conn:
            if repair or conn.dialect.name != "postgresql":
                await message_updates.hold_counts(conn)
            else:
                await conn.execution_options(isolation_level="REPEATABLE READ")
            scanned = await messages_repo.overview_scan(conn, cid)
            counted = await messages_repo.overview(conn, cid)
            if counted != scanned:
                COUNTS_DRIFT.labels("repaired" if repair else "reported").inc()
                log.warning("message counts differ from the ledger", extra={
                    "campaign_id": cid, "counted": str(counted[0]).replace("\n", " "),
                    "ledger": str(scanned[0]).replace("\n", " "), "repaired": repair})
                if repair:
                    await message_updates.recount(conn, cid)
            await conn.commit()
        return scanned[0]

    async def _compare(self, report: pb.ReconcileReport, cid: str, md: tuple, limit: int,
                       context: Any) -> None:
        try:
            st = await self.stats.GetCampaignStats(  # type: ignore[union-attr]
                spb.GetCampaignStatsRequest(campaign_id=cid), metadata=md,
                timeout=self._timeout(context, CALL_TIMEOUT))
            report.stats.CopyFrom(to_progress(st))
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:  # NOT_FOUND: stats never saw it (zeros)
                raise stats_error(exc, "GetCampaignStats") from None
        in_flight, after = False, ""
        while True:
            # Keyset pages: each is one short read, so events keep flowing into the ledger.
            async with self.store.read() as conn:
                rows = await messages_repo.states_page(conn, cid, after, PAGE)
            if not rows:
                break
            after = rows[-1].id
            try:
                got = await self.stats.BatchGetMessageStates(  # type: ignore[union-attr]
                    spb.BatchGetMessageStatesRequest(message_ids=[r.id for r in rows]), metadata=md,
                    timeout=self._timeout(context, CALL_TIMEOUT))
            except grpc.aio.AioRpcError as exc:
                raise stats_error(exc, "BatchGetMessageStates") from None
            seen = {s.message_id: s.status for s in got.states}
            for r in rows:
                report.compared += 1
                in_flight = in_flight or not states.is_final(r.status, r.channel)
                theirs = seen.get(r.id, S.MESSAGE_STATUS_UNSPECIFIED)
                if differs(r.status, theirs, r.held):
                    report.differing += 1
                    if len(report.differences) < limit:
                        report.differences.append(pb.MessageDifference(
                            message_id=r.id, ledger_status=r.status, stats_status=theirs))
            if len(rows) < PAGE:
                break
        report.final = not in_flight and report.differing == 0
