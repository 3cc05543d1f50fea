"""Builds run beside the ticks, not inside them.

A build takes as long as its audience (1,000,000 recipients: minutes). Awaited inside the
tick, it held up every other campaign of the replica for that long: a SENDING campaign
dispatched nothing, and the leases of the replica's other campaigns were not renewed, so
they ran out and another replica could take a campaign this one was still about to act on.
Now a tick starts the build as a task and goes on; every later tick renews all the replica's
leases (the building campaign's included) and skips the campaign while its build runs.

At most HERALD_SCHEDULER_MAX_BUILDS builds run at once per replica (a build's memory is
its chunk, so this bounds the replica's memory too); a due campaign beyond that waits
PENDING for a free slot, its lease kept."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import Gauge

from services.campaigns import lifecycle, settings
from services.campaigns.scheduler.base import SCHEDULER_ERRORS, JobBase, describe, log
from services.campaigns.scheduler.build import BuildMixin

BUILDS_RUNNING = Gauge("herald_campaigns_builds_running",
                       "Campaign builds this replica is running now.")


class BuildTasksMixin(BuildMixin, JobBase):
    @property
    def _builds(self) -> dict[str, asyncio.Task[bool]]:
        return self.__dict__.setdefault("build_tasks", {})

    def building(self) -> set[str]:
        """Campaigns whose build this replica is running (their leases are never given up)."""
        return {cid for cid, t in self._builds.items() if not t.done()}

    def start_build(self, row: Any) -> bool:
        """Start the campaign's build unless it is running or every slot is taken; returns
        whether it runs now."""
        cid = row["id"]
        running = self.building()
        if cid in running:
            return True
        if len(running) >= max(1, settings.SCHEDULER_MAX_BUILDS.get_int()):
            return False
        task = asyncio.create_task(self._run_build(row), name=f"build {cid}")
        self._builds[cid] = task
        BUILDS_RUNNING.set(len(running) + 1)
        task.add_done_callback(lambda t: self._build_ended(cid, t))
        return True

    def _build_ended(self, cid: str, task: asyncio.Task[bool]) -> None:
        if self._builds.get(cid) is task:
            del self._builds[cid]
        BUILDS_RUNNING.set(len(self.building()))
        # Built: a tick now starts its sending. Not after a failure: that is retried on the
        # next tick, not in a loop as fast as it fails.
        if not task.cancelled() and task.result():
            self.wake.set()

    async def _run_build(self, row: Any) -> bool:
        try:
            # The tick's row was read at its claim: a build that ended since (a task beside
            # the tick) left it saying BUILDING. Built campaigns are not built again.
            async with self.store.read() as conn:
                row = await self.store.get_row(conn, row["id"], None)
            if row is None or row["status"] not in (lifecycle.PENDING, lifecycle.BUILDING):
                return False
            return await self.build(row)
        except asyncio.CancelledError:
            # The replica stops: the campaign stays BUILDING and the next owner resumes it.
            log.info("build interrupted by stop, resumed by the next owner",
                     extra={"campaign_id": row["id"]})
            raise
        except Exception as exc:  # the campaign's state is as the last commit left it
            SCHEDULER_ERRORS.labels("build").inc()
            log.exception("campaign build failed, retried next tick", extra={
                "campaign_id": row["id"], "status": row["status"], "error": describe(exc)})
            return False

    async def builds_settled(self) -> None:
        """Wait until the builds running now have ended (whatever their result)."""
        while tasks := [t for t in self._builds.values() if not t.done()]:
            await asyncio.wait(tasks)

    async def stop_builds(self) -> None:
        """Cancel the running builds (each resumes where it stopped under the next owner)."""
        tasks = list(self._builds.values())
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
