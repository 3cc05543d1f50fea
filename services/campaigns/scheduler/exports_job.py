"""Export generation: when asked (CreateExport wakes the scheduler) and once a second for
expiry and take-overs, not on every tick: the pass is a write transaction. A build is leased
to this replica (its owner id, as for campaigns) for the scheduler's lease period, renewed as
it writes; a build whose replica died is taken over once that lease has run out. A replica
stopping finishes the build of its tick, or gives the export back if it is cancelled."""

from __future__ import annotations

from datetime import datetime

from services.campaigns import exports
from services.campaigns.scheduler.base import SCHEDULER_ERRORS, JobBase, describe, log


class ExportsMixin(JobBase):
    async def run_exports(self, now: datetime, asked: bool) -> None:
        if not (asked or self.exports_at is None or (now - self.exports_at).total_seconds() >= 1):
            return
        self.exports_at = now
        try:
            await exports.run_pending(self.store, self.clock, self.export_ttl, self.owner, self.lease)
        except Exception as exc:
            SCHEDULER_ERRORS.labels("exports").inc()
            log.exception("exports failed", extra={"error": describe(exc)})
