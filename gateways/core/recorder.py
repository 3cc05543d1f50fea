"""Group commit of outcomes: markers first (one Redis call), then the outcome events (one
publish for the lot), then the channel's own writes (hooks: e.g. a carrier's ids), then the
acks/naks (one write each).

Outcome on the marker first, then on the bus: if publishing fails, the redelivered job
re-publishes the recorded outcome and never re-sends. If recording fails, the outcomes of
jobs this process may have written stay in memory (memory.Unrecorded), so the jobs coming
back here are settled from it instead of ABANDONED; the caller hands the jobs back. With
retry_for, the recording is first retried in place that long (an outage shorter than it
loses no answer the carrier gave).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from herald.v1 import events_pb2 as e

from gateways.core import markers as m
from gateways.core.channel import Channel, Job
from gateways.core.events import outcome_item
from gateways.core.gate import WriteGate
from gateways.core.group import GroupCommit
from gateways.core.hooks import Hooks
from gateways.core.memory import Unrecorded
from gateways.core.outcome import marker_value
from gateways.core.retrying import retrying
from shared import bus, eventbatch, jsfast, states

K = e  # top-level enum constants: e.MessageEventKind.X costs ~3 µs per lookup
UNRECORDED_MAX = 100_000  # outcomes kept in memory while Redis cannot record them


@dataclass
class RetryPolicy:
    max_attempts: int = 5  # deliveries of a deferred job before it fails
    retry_base: float = 60.0  # nak delay after the first deferral; doubles per delivery
    retry_max: float = 3600.0

    def delay(self, delivery: int) -> float:
        return float(min(self.retry_base * 2 ** (delivery - 1), self.retry_max))


class Recorder:
    def __init__(self, channel: Channel, markers: m.SendMarkers, publisher: jsfast.Publisher,
                 policy: RetryPolicy, durable: str, log: logging.Logger,
                 retry_for: float = 0.0) -> None:
        self.channel, self.hooks, self.markers = channel, Hooks(channel), markers
        self.publisher, self.policy, self.durable, self.log = publisher, policy, durable, log
        # > 0: the whole recording (markers, events, the channel's writes) is retried in
        # place this long before the jobs are handed back (what the carrier answered is
        # known here only; a redelivery would find it written and unanswered)
        self.retry_for = retry_for
        self.unrecorded = Unrecorded(UNRECORDED_MAX)
        self.settled: Callable[[int], None] | None = None  # told how many jobs were settled
        self._group: GroupCommit[Job] = GroupCommit(self._commit, done=self._streamed)
        # commit([job]) without a future: its `waiter` (a Reporter) hears when it is done
        self.stream: Callable[[Job], None] = self._group.put
        self.gate: WriteGate | None = None  # whose acceptance writes are not repeated
        # Counter children looked up once each (on first use, as labels() would create
        # them), not per flush: a streaming channel flushes every loop pass, and a labels()
        # call takes a lock and hashes its values.
        self._children: dict[tuple[str, str], Any] = {}

    def commit(self, jobs: Sequence[Job]) -> asyncio.Future[None]:
        """Record, publish and settle `jobs` (with whatever else is being committed)."""
        return self._group.add(jobs)

    @staticmethod
    def _streamed(jobs: list[Job], exc: Exception | None) -> None:
        """Each streamed job's reporter hears its commit ended (one call per run of jobs of
        the same reporter); jobs committed with commit() have none."""
        waiter, n = None, 0
        for it in jobs:
            w = it.waiter
            if w is not waiter:
                if waiter is not None:
                    waiter.committed(n, exc)
                waiter, n = w, 0
            n += 1
        if waiter is not None:
            waiter.committed(n, exc)

    def finish(self, it: Job, writes: list[tuple[str, str]],
               release: list[m.Ticket], reopen: list[m.Ticket]) -> None:
        """A job's marker write (or released claim) and its outcome event."""
        o = it.outcome
        if o is None:  # busy, or handed back before anything was written: nak only
            if it.ticket is not None:
                (reopen if it.reopen else release).append(it.ticket)
            return
        job = it.job
        channel = self.channel.channel
        event_id = self.hooks.event_id
        key = it.ticket.key if it.ticket is not None else self.markers.key(job.message_id,
                                                                            job.attempt)
        if o.kind == K.MESSAGE_EVENT_KIND_DEFERRED:
            if it.delivery < self.policy.max_attempts:
                writes.append((key, m.marker_json(m.DEFERRED, time.time(),
                                                  {"code": o.code, "d": o.description})))
                msg_id = f"{job.message_id}:deferred:{job.attempt}:{it.delivery}"
                it.event = outcome_item(channel, job, o, msg_id, None, event_id)
                it.retry = self.policy.delay(it.delivery)
                it.result = "deferred"
                return
            it.outcome = o = self.channel.exhausted(o, it.delivery)
        state = m.SUBMITTED if o.kind == K.MESSAGE_EVENT_KIND_SUBMITTED else m.FAILED
        if it.replay_of is None:
            acc = it.accepted  # the same outcome's marker, made for the write gate already
            if acc is None or acc[0] is not o:
                writes.append((key, marker_value(state, time.time(), o)))
            elif not it.accepted_stored:  # the gate's write of it failed or is still out
                writes.append((key, acc[1]))
        it.result = it.result or state
        msg_id = f"{job.message_id}:{_kind_name(o.kind)}:{job.attempt}"
        it.event = outcome_item(channel, job, o, msg_id, it.replay_of, event_id)

    async def _commit(self, items: list[Job]) -> None:
        gate = self.gate
        if gate is not None:
            for it in items:
                if it.accepted is not None and not it.accepted_stored:
                    # Its acceptance is on the gate's call in flight (or the next): waiting
                    # for it saves writing the same markers again, often a Redis call.
                    await gate.acceptances_stored()
                    break
        writes: list[tuple[str, str]] = []
        release: list[m.Ticket] = []
        reopen: list[m.Ticket] = []
        for it in items:
            self.finish(it, writes, release, reopen)
        stored = False
        try:
            if self.retry_for > 0:
                stored = await self._store_retrying(items, writes, release, reopen)
            else:
                stored = await self._store_once(items, writes, release, reopen)
            if stored:
                await self._settle(items)
        finally:
            recorded = self.hooks.recorded
            if recorded is not None:
                recorded(items, stored)

    async def store(self, items: list[Job], writes: list[tuple[str, str]],
                    release: list[m.Ticket], reopen: list[m.Ticket]) -> None:
        """Markers (one Redis call), then the events (one publish for the lot), then the
        channel's own writes: a step that fails raises (PublishError for the events)."""
        try:
            await self.markers.set_values(writes, release, reopen)
        except Exception:
            # Jobs may be out with "written" markers: keep their outcomes, so the jobs
            # coming back to this process are settled from memory instead of ABANDONED.
            for it in items:
                if it.outcome is not None and it.replay_of is None and it.ticket is not None:
                    self.unrecorded.put((it.job.message_id, it.job.attempt), it.outcome)
            raise
        # One write and one future for the batch's events (shared.jsfast.Publisher), and one
        # bus message per kind (shared.eventbatch: a MessageEventBatch, one Nats-Msg-Id and
        # one stream ack for its events). Measured, 5,120 events in batches of 128 on this
        # machine: 32-40 us of client CPU per event with a future per publish
        # (AckedPublisher), 18-23 us per batch-publish of one message per event.
        batch = [it.event for it in items if it.event is not None]
        if batch:
            try:
                await eventbatch.publish_many(self.publisher, batch)
            except Exception as exc:
                raise PublishError(exc) from exc
            self._count("published", "events", len(batch))
        record = self.hooks.record
        if record is not None:
            await record(items)

    async def _store_once(self, items: list[Job], writes: list[tuple[str, str]],
                          release: list[m.Ticket], reopen: list[m.Ticket]) -> bool:
        """A failed marker write raises (the caller hands the jobs back); failed events are
        redelivered (the redelivered jobs re-publish their recorded outcomes, same ids)."""
        try:
            await self.store(items, writes, release, reopen)
        except PublishError as exc:
            cause = exc.__cause__ or exc
            self.log.warning("outcomes not published, redelivering the batch", extra={
                "reason": f"{type(cause).__name__}: {cause}", "jobs": len(items)})
            await self._hand_back(items)
            return False
        return True

    async def _store_retrying(self, items: list[Job],
                              writes: list[tuple[str, str]],
                              release: list[m.Ticket], reopen: list[m.Ticket]) -> bool:
        try:
            await retrying(lambda: self.store(items, writes, release, reopen), self.retry_for,
                           self.log, "recording outcomes")
        except Exception as exc:
            cause = exc.__cause__ if isinstance(exc, PublishError) and exc.__cause__ else exc
            self.log.error("recording outcomes failed; redelivering their jobs (their markers "
                           "decide: replayed or ABANDONED, never resent)", extra={
                               "count": len(items), "error": f"{type(cause).__name__}: {cause}",
                               "retried_for_s": self.retry_for})
            await self._hand_back(items)
            return False
        return True

    async def _hand_back(self, items: list[Job]) -> None:
        await settle([it.msg for it in items], 1.0)
        self._count("bus", "nak", len(items))
        self._count_settled(items)

    async def _settle(self, items: list[Job]) -> None:
        acks: list[Any] = []
        naks: dict[float, list[Any]] = {}
        results: dict[str, int] = {}
        fresh = 0  # settled here first
        for it in items:
            if it.result:
                results[it.result] = results.get(it.result, 0) + 1
            if it.retry is not None:
                naks.setdefault(it.retry, []).append(it.msg)
            else:
                acks.append(it.msg)
            if not it.settled:
                it.settled = True
                fresh += 1
        for result, n in results.items():
            self._count("jobs", result, n)
        await settle(acks, None)
        self._count("bus", "ack", len(acks))
        for delay, group in naks.items():
            await settle(group, delay)
            self._count("bus", "nak", len(group))
        if fresh and self.settled is not None:
            self.settled(fresh)

    def _count(self, family: str, label: str, n: int) -> None:
        """jobs_total by result, herald_bus_messages by verdict, published events."""
        child = self._children.get((family, label))
        if child is None:
            if family == "jobs":
                metrics = self.channel.metrics
                child = metrics.jobs.labels(metrics.result(label))
            elif family == "bus":
                child = bus.BUS_MESSAGES.labels(self.durable, label)
            else:
                child = bus.BUS_PUBLISHED.labels(label)
            self._children[family, label] = child
        child.inc(n)

    def _count_settled(self, items: list[Job]) -> None:
        n = 0
        for it in items:
            if not it.settled:
                it.settled = True
                n += 1
        if n and self.settled is not None:
            self.settled(n)


_kind_name = functools.cache(states.kind_name)  # "submitted", "failed": in every msg id


class PublishError(Exception):
    """The outcome events were not stored (the cause is chained)."""


async def settle(msgs: list[Any], nak_delay: float | None) -> None:
    """Ack (nak_delay None) or nak many jobs: jsfast messages in one write."""
    lean_type = jsfast.JsMsg
    lean = [x for x in msgs if isinstance(x, lean_type)]
    if lean:
        if nak_delay is None:
            await jsfast.settle_many(lean)
        else:
            await jsfast.settle_many(lean, jsfast.nak_payload(nak_delay))
    if len(lean) == len(msgs):  # the usual case: no nats-py message among them
        return
    for x in msgs:
        if not isinstance(x, lean_type):
            await (x.ack() if nak_delay is None else x.nak(delay=nak_delay))
