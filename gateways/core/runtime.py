"""The channel runtime: jobs pulled in batches, claimed, prepared and sent by the channel,
their outcomes recorded, published and acked.

Per fetched batch: one Redis round trip claims every job's send marker ("held": nobody
else sends it, the carrier has nothing yet), the channel prepares (CPU only) and sends the
batch, each job's marker moves to "written" right before its bytes go out (gate.WriteGate:
one Redis call for the jobs the connections are about to finish together), the outcomes
are group-committed (recorder.Recorder: one Redis call, one publish, one ack write). A few
batches are in flight at once so the connections never wait for the bus. Ack only after the
outcome is on the bus.

A redelivered job finds its marker (judge.py): an outcome is re-published instead of sending
again; a "held" claim of a stopped process is taken over and the job sent cleanly; only a
"written" marker without outcome (or a job Redis may have forgotten, see shared.epoch) is
ABANDONED: the carrier may have the message, and a second copy is worse than none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from gateways.core import consuming, judge
from gateways.core import markers as m
from gateways.core.channel import Channel, Job
from gateways.core.gate import WriteGate
from gateways.core.hooks import Hooks
from gateways.core.memory import HandedBack
from gateways.core.outcome import Outcome
from gateways.core.ratelog import RateLimitedLog
from gateways.core.recorder import Recorder, RetryPolicy, settle
from gateways.core.reporter import Reporter
from shared import bus, epoch, jsfast
from shared.adapters import nats_internals
from shared.timeutil import from_ts

PUBLISH_TIMEOUT = 10.0
parse_job = e.MessageJob.FromString  # a DecodeError for what is not one (the job is dropped)
TICK = 1.0  # seconds between liveness beats and epoch reads
UNWRITTEN_MAX = 100_000  # jobs handed back unwritten that this process remembers
F = c.FailureCategory


@dataclass
class RuntimeConfig:
    durable: str  # the durable pull consumer every replica shares
    subject: str  # its filter subject (the channel's jobs)
    stream: str = bus.JOBS_STREAM
    lease: float = 150.0  # a claim or "written" marker younger than this may belong to a live process
    batch: int = 128
    batches_in_flight: int = 3  # the in-flight cap: this many fetched batches at once
    # > 0: the in-flight cap in jobs instead, each freed as its job is settled (consuming.py)
    max_in_flight: int = 0
    consumer: str = "jsfast"  # shared.consumer; or "nats": nats-py's pull_subscribe/fetch
    ack_wait: float = 30.0  # of the durable consumer, when this process creates it
    max_ack_pending: int = 10000
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    record_retry_for: float = 0.0  # recording retried in place this long (recorder.py)
    drain_timeout: float | None = None  # jobs mode: longest wait for the jobs in hand on stop


class ClaimFailed(Exception):
    """The claim of a batch's send markers failed (Redis): nothing was sent."""


def published_at(msg: Msg | jsfast.JsMsg) -> float:
    """When the stream stored the job (Unix time), from its delivery metadata."""
    meta = msg.metadata
    ns = getattr(meta, "timestamp_ns", None)
    if ns is not None:
        return ns / 1e9
    return float(meta.timestamp.timestamp())  # type: ignore[union-attr]


class Runtime:
    def __init__(self, js: JetStreamContext, markers: m.SendMarkers, channel: Channel,
                 cfg: RuntimeConfig) -> None:
        self.js = js
        self.markers = markers
        self.channel = channel
        self.cfg = cfg
        name = channel.name
        self.hooks = hooks = Hooks(channel)
        self.log = logging.getLogger(getattr(channel, "logger", f"herald.{name}.worker"))
        self.publisher = jsfast.Publisher(nats_internals.connection_of(js), PUBLISH_TIMEOUT)
        self.gate = WriteGate(markers)
        self.recorder = Recorder(channel, markers, self.publisher, cfg.policy, cfg.durable,
                                 self.log, cfg.record_retry_for)
        self.recorder.gate = self.gate
        self.handed_back = HandedBack(UNWRITTEN_MAX)
        # Told how many jobs were settled outside the recorder (consuming.JobsInFlight).
        self.settled: Callable[[int], None] | None = None
        # When Redis's current data set began (shared.epoch): read at start, every tick, and
        # with every claim; None until the first read.
        self.epoch_began: float | None = None
        # Liveness beats often enough for the key's time to live (three per TTL at least).
        self.tick_every = min(TICK, markers.live_ttl / 3)
        self.abandon_log = RateLimitedLog(self.log, hooks.abandon_event)
        self.takeover_log = RateLimitedLog(self.log, f"stale {name} send claims taken over")
        self.trouble_log = RateLimitedLog(self.log, f"{name} gateway housekeeping failed")
        # Redis down: every fetched batch fails its claim; one line per 10 s, not a traceback
        # per batch.
        self.claim_log = RateLimitedLog(self.log, "claiming jobs failed; redelivering them")

    def batch_size(self) -> int:
        limit = self.channel.batch_limit()
        return max(min(self.cfg.batch, limit) if limit else self.cfg.batch, 1)

    # --- housekeeping: liveness and the Redis epoch ------------------------------------
    async def tick(self) -> None:
        """Beat this process's liveness key (its claims stay its own) and read the epoch."""
        await self.markers.heartbeat()
        self._see_epoch(await epoch.current(self.markers.redis))

    def _see_epoch(self, began: float) -> None:
        if self.epoch_began is not None and began != self.epoch_began:
            self.log.warning("redis data set changed: send markers were lost", extra={
                "reason": "shared.epoch key missing or replaced (Redis restarted without its "
                          "append-only file, or was flushed)",
                "epoch_was": self.epoch_began, "epoch_now": began})
        self.epoch_began = began

    def _flush_logs(self) -> None:
        self.abandon_log.flush()
        self.takeover_log.flush()
        self.trouble_log.flush()
        self.claim_log.flush()

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.tick_every)
            if stop.is_set():
                break
            try:
                await self.tick()
            except Exception as exc:  # Redis away: claims wait, the next tick retries
                self.trouble_log.note(f"{type(exc).__name__}: {exc}")
            self._flush_logs()

    async def _first_tick(self, stop: asyncio.Event) -> bool:
        """No job is claimed before the epoch is known."""
        while not stop.is_set():
            try:
                await self.tick()
                return True
            except Exception as exc:
                self.trouble_log.note(f"{type(exc).__name__}: {exc}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.tick_every)
        return False

    async def run(self, stop: asyncio.Event) -> None:
        """Pull and send until `stop`, then drain: the batches in hand finish and are
        recorded, the liveness key is retired (claims left behind may be taken at once)."""
        bus.watch_lag(self.js, self.cfg.stream, self.cfg.durable)  # backlog visible while Redis is down
        listeners = list(self.channel.listeners())
        for listener in listeners:
            await listener.start()
        try:
            if not await self._first_tick(stop):
                return
            keeper = asyncio.create_task(self._housekeeping(stop))
            try:
                await consuming.consume(self, stop)
            finally:
                keeper.cancel()
                with contextlib.suppress(BaseException):
                    await keeper
                self.abandon_log.flush()
                with contextlib.suppress(Exception):
                    await self.markers.retire()
        finally:
            for listener in listeners:
                with contextlib.suppress(Exception):
                    await listener.stop()

    # --- one batch --------------------------------------------------------------------
    async def handle(self, msg: Msg) -> None:
        """One job (tests, bus.pull_loop compatibility): acks/naks it itself."""
        await self.handle_batch([msg])

    async def handle_batch(self, msgs: Sequence[Msg | jsfast.JsMsg]) -> None:
        items: list[Job] = []
        durable = self.cfg.durable
        bad = 0
        try:
            for msg in msgs:
                try:
                    job = parse_job(msg.data)
                    if not job.message_id:
                        raise bus.PermanentError("job without message_id")
                except Exception as exc:
                    self.log.error(f"dropping unprocessable {self.channel.name} job",
                                   extra={"reason": f"{type(exc).__name__}: {exc}"})
                    bus.BUS_MESSAGES.labels(durable, "term").inc()
                    bad += 1
                    with contextlib.suppress(Exception):
                        await msg.term()
                    continue
                items.append(Job(msg, job, max(int(msg.metadata.num_delivered or 1), 1)))
            for group in rounds(items):
                try:
                    await self._process(group)
                except Exception as exc:
                    await self._failed(group, exc)
        finally:
            # Every job counts free once its batch is over (settled by now, or by a bug
            # left to JetStream's redelivery).
            if self.settled is not None:
                left = bad
                for it in items:
                    if not it.settled:
                        it.settled = True
                        left += 1
                if left:
                    self.settled(left)

    async def _failed(self, group: list[Job], exc: Exception) -> None:
        durable = self.cfg.durable
        if isinstance(exc, ClaimFailed):  # a dependency, not a bug: no traceback
            cause = exc.__cause__ or exc
            self.claim_log.note(f"{type(cause).__name__}: {cause}", n=len(group),
                                channel=self.channel.name)
        else:
            self.log.exception(f"{self.channel.name} batch failed, redelivering", extra={
                "reason": f"{type(exc).__name__}: {exc}", "jobs": len(group)})
        # Claims not written are let go (a no-op where Redis is the trouble: they are then
        # taken over once this process's lease runs out).
        with contextlib.suppress(Exception):
            await self.markers.set_many([], release=[
                it.ticket for it in group if it.ticket is not None and not it.settled])
        left = [it for it in group if not it.settled]
        with contextlib.suppress(Exception):
            await settle([it.msg for it in left], 1.0)
        bus.BUS_MESSAGES.labels(durable, "nak").inc(len(left))

    async def _process(self, items: list[Job]) -> None:
        holder = self.markers.holder()
        ref = self.channel.ref
        try:
            claims = await self.markers.claim_many([
                (it.job.message_id, it.job.attempt, ref(it.job)) for it in items], holder)
        except Exception as exc:  # nothing was written: their next delivery is known unsent
            for it in items:
                self.handed_back.put((it.job.message_id, it.job.attempt), it.delivery)
            raise ClaimFailed from exc
        began = claims.epoch
        if began is None:  # the data set is gone since our last look: start the next epoch
            began = await epoch.current(self.markers.redis)
        if began != self.epoch_began:
            self._see_epoch(began)
        sending: list[Job] = []
        now = datetime.now(UTC)
        prepare = self.channel.prepare
        for it, claim, key in zip(items, claims, claims.keys, strict=True):
            if not claim.claimed:
                self._already_handled(it, claim)
                continue
            job = it.job
            it.ticket = m.Ticket(key, holder)
            prev = claim.previous
            if prev is None and it.delivery > 1 and epoch.maybe_sent_before_loss(
                    published_at(it.msg), it.delivery, False, began) and \
                    not self.handed_back.known_unwritten((job.message_id, job.attempt),
                                                         it.delivery):
                # Delivered before, and its marker may have been lost with Redis's data.
                self._abandon(it, "redis_lost")
                continue
            if prev is not None and prev.get("s") == m.HELD:
                self.channel.metrics.taken_over.inc()
                self.takeover_log.note("held by a stopped worker", message_id=job.message_id)
            if job.HasField("expires_at") and now > from_ts(job.expires_at):
                it.outcome = self.hooks.expired(job)
                it.result = "expired"
                continue
            prepared = prepare(job)
            if isinstance(prepared, Outcome):
                it.outcome = prepared
            else:
                it.prepared = prepared
                sending.append(it)
        report = Reporter(self, len(sending))
        if sending:
            try:
                await self.channel.send(sending, self.gate, report)
            finally:
                report.unreported(sending)
        rest = [it for it in items if not it.reported]
        try:
            if rest:
                await self.recorder.commit(rest)
        finally:
            await report.streamed()

    def _already_handled(self, it: Job, claim: m.Claim) -> None:
        v = judge.judge(claim.previous, claim.alive, self.markers.owner, self.cfg.lease,
                        self.recorder.unrecorded, (it.job.message_id, it.job.attempt))
        if v.action == judge.REPLAY:
            it.outcome, it.result, it.replay_of = v.outcome, "duplicate", v.at
        elif v.action == judge.KNOWN:  # decided by this process, recording failed: record it now
            it.outcome = v.outcome
        elif v.action == judge.BUSY:
            metrics = self.channel.metrics
            metrics.jobs.labels(metrics.result("busy")).inc()
            it.retry = v.retry
        else:
            self._abandon(it, v.reason)

    def _abandon(self, it: Job, reason: str) -> None:
        it.outcome = self.hooks.abandoned(it.job, reason)
        it.result = "abandoned"
        metrics = self.channel.metrics
        label = metrics.reason(reason)
        metrics.abandoned.labels(label).inc()
        self.abandon_log.note(label, message_id=it.job.message_id,
                              campaign_id=it.job.campaign_id,
                              meaning=self.channel.abandon_meaning(reason))


def rounds(items: list[Job]) -> list[list[Job]]:
    """The same job twice in one batch (a redelivery next to the original) goes in a later
    round, so it finds the first copy's recorded outcome, not a busy marker."""
    if len({it.job.message_id for it in items}) == len(items):
        return [items]  # the usual batch: every message once (so every job once)
    out: list[list[Job]] = []
    seen: list[set[tuple[str, int]]] = []
    for it in items:
        key = (it.job.message_id, it.job.attempt)
        for group, keys in zip(out, seen, strict=True):
            if key not in keys:
                group.append(it)
                keys.add(key)
                break
        else:
            out.append([it])
            seen.append({key})
    return out
