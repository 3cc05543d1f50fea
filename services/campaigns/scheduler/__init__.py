"""Scheduler and dispatcher: PENDING -> BUILDING -> SENDING <-> PAUSED -> DONE, all state
in SQL, so a restarted process carries on where the last one stopped.

Each job is a module: lease (which replica works on which campaign), build (the resumable
audience build), builds (builds run as tasks beside the ticks), dispatch (pacing and
publishing jobs), complete (completion, auto-pause, expiry), finish (messages that will never
be sent), assumed (SMS assumed delivered), exports_job (export files). This module wires them into one tick. Every transition is a
compare-and-set on the status, so replicas that race lose cleanly.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from datetime import datetime
from typing import Any

from herald.v1 import campaigns_pb2 as pb
from herald.v1 import recipients_pb2_grpc as rgrpc
from nats.js import JetStreamContext

from services.campaigns import lifecycle, settings
from services.campaigns.publishing import BatchPublisher
from services.campaigns.scheduler.assumed import AssumedMixin
from services.campaigns.scheduler.base import SCHEDULER_ERRORS, describe, log
from services.campaigns.scheduler.build import variant_assigner
from services.campaigns.scheduler.builds import BuildTasksMixin
from services.campaigns.scheduler.complete import CompleteMixin
from services.campaigns.scheduler.content import (
    content_of,
    content_problem,
    message_id,
    preview,
    variables_of,
)
from services.campaigns.scheduler.dispatch import DispatchMixin
from services.campaigns.scheduler.exports_job import ExportsMixin
from services.campaigns.scheduler.lease import LeaseMixin
from services.campaigns.store import Store
from services.campaigns.window import Window
from shared.timeutil import Clock, aware

__all__ = ["Scheduler", "content_of", "content_problem", "message_id", "preview", "variables_of",
           "variant_assigner"]


class Scheduler(LeaseMixin, BuildTasksMixin, DispatchMixin, CompleteMixin, AssumedMixin, ExportsMixin):
    def __init__(self, store: Store, js: JetStreamContext, recipients: rgrpc.RecipientServiceStub,
                 clock: Clock | None = None, interval: float = 0.2, batch: int = 500,
                 job_ttl: float = 86400.0, lease: float = 10.0, auto_pause: int = 5,
                 owner: str | None = None, export_ttl: float = 3600.0,
                 max_payload: int = 1024 * 1024, assumed_after: float | None = None,
                 assumed_sweep: float | None = None) -> None:
        self.max_payload = max_payload  # the NATS server's limit (Client.max_payload)
        self.assumed_after = (settings.ASSUMED_DELIVERED_AFTER.get_float()
                              if assumed_after is None else assumed_after)
        self.assumed_sweep = (settings.ASSUMED_DELIVERY_SWEEP.get_float()
                              if assumed_sweep is None else assumed_sweep)
        self.sweep_at: datetime | None = None
        self.sweep_cursor = ""  # the last message id of an unfinished sweep
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease = lease
        self.auto_pause = auto_pause
        self.export_ttl = export_ttl
        self.exports_at: datetime | None = None
        self.buckets: dict[str, tuple[float, float]] = {}  # campaign -> (tokens, at)
        self.store = store
        self.js = js
        self.publisher = BatchPublisher(js)
        self.recipients = recipients
        self.clock = clock or Clock()
        self.interval = interval
        self.batch = batch
        self.job_ttl = job_ttl
        self.wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            busy = False
            try:
                # A tick that used a campaign's whole batch leaves work behind: the next one
                # starts at once instead of after the interval (which capped a campaign at
                # batch / interval jobs per second).
                busy = await self.tick() >= self.batch
            except Exception as exc:  # SQL or NATS unavailable: the next tick tries again
                SCHEDULER_ERRORS.labels("tick").inc()
                log.exception("scheduler tick failed", extra={"error": describe(exc)})
            if busy and not stop.is_set():
                await asyncio.sleep(0)
                continue
            self.wake.clear()
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.wake.wait())]
            await asyncio.wait(waiters, timeout=self.interval, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
        await self.stop_builds()
        await self.release_leases()

    async def tick(self) -> int:
        """One pass over the leased campaigns; returns how many jobs it dispatched."""
        now = self.clock.now()
        rows = await self.claim(now)
        await self.count_active()
        dispatched = 0
        await self.run_exports(now, self.wake.is_set())
        for row in rows:
            try:
                dispatched += await self.step(row, now)
            except Exception as exc:  # the campaign's state is as the last commit left it
                SCHEDULER_ERRORS.labels("step").inc()
                log.exception("scheduler step failed", extra={
                    "campaign_id": row["id"], "status": row["status"], "error": describe(exc)})
        await self.maybe_sweep_assumed(now)
        return dispatched

    async def step(self, row: Any, now: datetime) -> int:
        """The job a leased campaign's status calls for."""
        status, cid = row["status"], row["id"]
        if cid in self.building():  # its build runs beside the ticks (scheduler.builds)
            return 0
        end = aware(row["end_at"])
        if end is not None and now >= end and status != lifecycle.BUILDING:
            await self.end_reached(row)
            return 0
        window = Window.of(row)
        if status == lifecycle.PENDING:
            start = aware(row["start_at"])
            if start is None or start <= now:
                self.start_build(row)  # or it waits PENDING for a free slot
        elif status == lifecycle.BUILDING:  # interrupted build (or another owner's): resume it
            self.start_build(row)
        elif status == lifecycle.PAUSED:
            if row["paused_by"] == "window" and window is not None and window.is_open(now):
                await self.transition(cid, lifecycle.SENDING, "sending window opened", paused_by="")
        elif status == lifecycle.SENDING:
            if window is not None and not window.is_open(now):
                nxt = window.next_opening(now).isoformat(timespec="minutes")
                await self.transition(cid, lifecycle.PAUSED,
                                      f"outside sending window (reopens {nxt})", paused_by="window")
                return 0
            # Auto-pause only while messages remain to send (too_many_failures checks): a
            # campaign whose messages are all final completes below, whatever its last outcomes.
            if await self.too_many_failures(row):
                return 0
            n = await self.dispatch(row)
            if row["mode"] != pb.CAMPAIGN_MODE_TRIGGER:
                await self.maybe_complete(row)
            return n
        return 0
