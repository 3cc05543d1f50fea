"""RebuildCampaignStats end to end: ledger pages -> (consumer caught up) -> merged into Redis
-> swapped in. Logs one line per outcome with a stable name and counts it in
herald_stats_rebuilds_total{result}."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass

import grpc

from services.stats.catchup import CatchUp, ConsumerBehind
from services.stats.ledger import LedgerReader, LedgerUnavailable
from services.stats.metrics import REBUILDS
from services.stats.rebuild import RebuildStore, Superseded
from shared.errors import HeraldError

log = logging.getLogger("herald.stats.rebuild")
CHUNK = 500  # ledger rows merged by one Lua call (bounds how long Redis is held)


@dataclass(frozen=True)
class RebuildResult:
    messages: int  # ledger rows read
    merged: int    # messages counted into the new counters
    seconds: float


class Rebuilder:
    def __init__(self, reader: LedgerReader, store: RebuildStore, catchup: CatchUp | None) -> None:
        self.reader = reader
        self.store = store
        # None: no wait for the consumer (in-process tests without a bus consumer).
        self.catchup = catchup

    async def run(self, campaign_id: str, workspace: str) -> RebuildResult:
        """Rebuilds the campaign's stats from the ledger. Raises HeraldError: NOT_FOUND (the
        ledger does not know the campaign in workspace), UNAVAILABLE (ledger or consumer),
        ABORTED (a newer rebuild of the campaign took over)."""
        start = time.perf_counter()
        extra = {"campaign_id": campaign_id, "workspace": workspace}
        log.info("stats rebuild started", extra=extra)
        token = await self.store.begin(campaign_id)
        rows = merged = 0
        daily: Counter[tuple[str, str]] = Counter()
        try:
            async for page in self.reader.pages(campaign_id, workspace):
                if self.catchup is not None:
                    await self.catchup.wait()
                for i in range(0, len(page), CHUNK):
                    merged += await self.store.merge(campaign_id, workspace, token, page[i:i + CHUNK])
                rows += len(page)
                for m in page:
                    daily.update(m.days())
            await self.store.finish(campaign_id, workspace, token, dict(daily))
        except (LedgerUnavailable, ConsumerBehind, Superseded) as exc:
            await self._failed(campaign_id, token, exc, extra)
            raise self._status(campaign_id, exc) from None
        except BaseException as exc:  # NOT_FOUND, Redis trouble, the caller cancelling
            await self._failed(campaign_id, token, exc, extra)
            raise
        result = RebuildResult(rows, merged, time.perf_counter() - start)
        REBUILDS.labels("ok").inc()
        log.info("stats rebuild done", extra={**extra, "messages": rows, "merged": merged,
                                              "seconds": round(result.seconds, 3)})
        return result

    async def _failed(self, campaign_id: str, token: str, exc: BaseException, extra: dict) -> None:
        result = {LedgerUnavailable: "ledger_unavailable", ConsumerBehind: "consumer_behind",
                  Superseded: "superseded", asyncio.CancelledError: "cancelled"}.get(type(exc))
        if result is None:
            is_not_found = isinstance(exc, HeraldError) and exc.code == grpc.StatusCode.NOT_FOUND
            result = "not_found" if is_not_found else "error"
        REBUILDS.labels(result).inc()
        level = logging.INFO if result == "not_found" else logging.WARNING
        if result == "error":
            level = logging.ERROR
        log.log(level, "stats rebuild failed", extra={
            **extra, "result": result, "error_type": type(exc).__name__, "error": str(exc)})
        if result != "superseded":  # a newer rebuild owns the marker now
            try:
                await asyncio.shield(self.store.abandon(campaign_id, token))
            except Exception as err:  # the marker expires by itself
                log.warning("stats rebuild marker not removed", extra={
                    **extra, "error_type": type(err).__name__, "error": str(err)})

    @staticmethod
    def _status(campaign_id: str, exc: Exception) -> HeraldError:
        if isinstance(exc, LedgerUnavailable):
            return HeraldError(grpc.StatusCode.UNAVAILABLE,
                               f"cannot rebuild campaign {campaign_id}: the campaigns service "
                               f"did not answer ({exc}); retry")
        if isinstance(exc, ConsumerBehind):
            return HeraldError(grpc.StatusCode.UNAVAILABLE,
                               f"cannot rebuild campaign {campaign_id} now: the stats consumer "
                               f"is behind the bus ({exc}); retry once it caught up")
        if isinstance(exc, Superseded):
            return HeraldError(grpc.StatusCode.ABORTED,
                               f"a newer rebuild of campaign {campaign_id} took over; its "
                               "result stands")
        raise AssertionError(f"no status for {exc!r}")
