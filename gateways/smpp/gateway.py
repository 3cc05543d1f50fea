"""The SMPP gateway worker: SMS jobs from JetStream -> submit_sm on a route's binds;
receipts and replies -> events. This module wires the parts together and runs the job
path's generic steps (pull, in-flight cap, claim, dispatch, drain); each part has its
module:

  jobs.py       MessageJob -> SubmitJob (addresses.py, content.py, routes.py), JobRejected
                jobs FAILED at once (outcomes.failed_now)
  claims.py     one Redis call per fetched batch claims its jobs (send marker "held": two
                pods never work on one job); markers found there are replayed, taken over or
                ABANDONED, never resent (unwritten.py: jobs this process handed back)
  binds.py      each job waits in its bind's FIFO; when the window has room its marker moves
                to "written" for exactly the jobs of one socket write, confirmed in Redis
                (one call per write batch, _gate here) BEFORE the bytes go out: "possibly
                sent" starts there and nowhere earlier
  submit.py     what each submit_sm_resp means: next part, accepted, throttled, retried in
                place, refused, unknown (outcomes.py builds what is recorded)
  recording.py  finished jobs are group-committed: markers -> events -> id mappings -> ack,
                one Redis call / one publish burst / one ack write per batch
  inbound.py    deliver_sm: receipts credited to their message (matching.py) -> DELIVERED /
                FAILED; replies and opt-outs (mo.py)
Messages left SUBMITTED without a final receipt are swept by the campaigns scheduler from
the ledger (ASSUMED_DELIVERED): nothing here that a Redis loss could stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig

from gateways.smpp import events, metrics, pdu
from gateways.smpp.binds import Route
from gateways.smpp.claims import Claims
from gateways.smpp.config import GatewayConfig
from gateways.smpp.inbound import Inbound
from gateways.smpp.jobs import Preparer, SubmitJob
from gateways.smpp.logs import cause, log, quietly
from gateways.smpp.matching import Matcher
from gateways.smpp.mo import Replies
from gateways.smpp.outcomes import Abandons, failed_now
from gateways.smpp.recording import Recorder
from gateways.smpp.rejection import JobRejected
from gateways.smpp.routes import RouteConfig
from gateways.smpp.session import ClientConfig, SmppClient
from gateways.smpp.store import Store
from gateways.smpp.submit import SubmitPolicy
from gateways.smpp.unwritten import UnwrittenJobs
from shared import bus, epoch, jsfast
from shared.adapters import nats_internals

__all__ = ["Gateway", "GatewayConfig", "in_flight_cap", "job_ack_wait"]

FC = c  # top-level enum constants: EnumTypeWrapper lookups cost ~3 µs each (measured)


def job_ack_wait(response_timeout: float) -> float:
    return max(30.0, 4 * response_timeout)


def in_flight_cap(routes: list[RouteConfig]) -> int:
    """Jobs to hold between fetch and ack: 4x the window slots (a job stays in flight until
    its outcome is recorded and acked, and at a few thousand msg/s the record step's Redis
    and NATS round trips hold ~2 windows' worth; with 2x the windows stood empty, 4x gave
    +13 % msg/s). When every route is rate-limited, no more than a quarter of ack_wait's
    worth at that rate, so queued jobs are never redelivered while they wait their turn."""
    cap = max(64, 4 * sum(r.client.window * r.binds for r in routes))
    rates = [r.client.throughput * r.binds for r in routes]
    if rates and all(rate > 0 for rate in rates):
        ack_wait = job_ack_wait(max(r.client.response_timeout for r in routes))
        cap = min(cap, max(1, int(sum(rates) * ack_wait / 4)))
    return cap


class Gateway:
    def __init__(self, js: JetStreamContext, redis: aioredis.Redis,
                 routes: list[RouteConfig] | ClientConfig,
                 cfg: GatewayConfig | None = None) -> None:
        self.js = js
        self.cfg = cfg = cfg or GatewayConfig()
        if isinstance(routes, ClientConfig):
            routes = [RouteConfig(name=routes.name or "default", client=routes)]
        self.route_cfgs = routes
        self.store = Store(redis, cfg.mapping_ttl, cfg.dedup_ttl, cfg.mo_link_ttl)
        # This process in its send markers; alive while herald:smpp:holder:<holder> is.
        self.holder = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.routes = {r.name: Route(r, self._sink_for, self._gate) for r in routes}
        self.nc = nats_internals.connection_of(js)
        self.publisher = jsfast.Publisher(self.nc, timeout=events.PUBLISH_TIMEOUT)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._response_timeout = max(r.client.response_timeout for r in routes)
        self.max_in_flight = cfg.max_in_flight or in_flight_cap(routes)
        self._in_flight = 0  # jobs fetched and not yet acked/naked
        self._room = asyncio.Event()
        self._dispatched: set[int] = set()  # jobs of batches being started that went on their way
        self.matcher = Matcher(self.store, self.publisher, cfg.receipt_match_wait,
                               cfg.receipt_retry_for)
        self.inbound = Inbound(self.store, self.publisher, self.matcher,
                               Replies(self.store, self.publisher, cfg.opt_out_keywords,
                                       cfg.receipt_retry_for), self._spawn,
                               cfg.receipt_retry_for)
        self.recorder = Recorder(self.store, self.publisher, cfg.consumer, cfg.record_retry_for,
                                 self.matcher.recorded, self._jobs_done, self._flush_counters)
        abandons, unwritten = Abandons(), UnwrittenJobs()
        self.policy = SubmitPolicy(self.store, self.holder, cfg.consumer, cfg.throttle_delay,
                                   cfg.syserr_retries, self._response_timeout, self.matcher,
                                   self.recorder, abandons, unwritten, self._spawn, self._jobs_done)
        self.preparer = Preparer(routes, self.routes, self.policy, cfg.default_sender, cfg.max_parts,
                                 cfg.udh16)
        # A held/written marker older than this is stale even if its holder still lives (a
        # job in hand is acked or handed back well within it).
        stale_after = 2 * job_ack_wait(self._response_timeout) + cfg.record_retry_for
        self.claims = Claims(self.store, self.holder, cfg.consumer, cfg.throttle_delay,
                             self._response_timeout, stale_after, self.routes, self.policy, abandons,
                             unwritten, self._dispatched, self._jobs_done)

    @property
    def client(self) -> SmppClient:
        """The first bind of the first route (single-route callers and tests)."""
        return next(iter(self.routes.values())).clients[0]

    async def wait_bound(self, timeout: float) -> bool:
        results = await asyncio.gather(*(r.wait_bound(timeout) for r in self.routes.values()))
        return all(results)

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- lifecycle ----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Consume jobs until `stop` is set; then finish the jobs in hand (the windows
        drain), answer the receipts being handled, and unbind."""
        await self.publisher.start()
        try:
            await self.store.heartbeat(self.holder, self.cfg.holder_ttl)
            began = await epoch.current(self.store.redis)
            log.info("gateway process named in send markers",
                     extra={"holder": self.holder, "redis_epoch": began})
        except Exception as exc:  # claims fail (jobs nak'd) until Redis is back; the beat retries
            log.warning("Redis unavailable at start", extra={"holder": self.holder, "error": cause(exc)})
        for r in self.routes.values():
            r.start()
        beat = asyncio.create_task(self._heartbeat())
        try:
            await self._pull(stop)
        finally:
            await asyncio.gather(*(r.close() for r in self.routes.values()))
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            with contextlib.suppress(Exception):  # else it expires after holder_ttl
                await self.store.forget_holder(self.holder)
            self.matcher.drop_waiting()
            await self.publisher.close()
            self._flush_counters()

    async def _heartbeat(self) -> None:
        """Keep our holder key alive: markers we hold are ours while it lives."""
        period = max(0.05, self.cfg.holder_ttl / 3)
        while True:
            await asyncio.sleep(period)
            try:
                await self.store.heartbeat(self.holder, self.cfg.holder_ttl)
            except Exception as exc:  # our jobs' write checks fail meanwhile too: no harm
                log.warning("renewing the send-marker holder key failed",
                            extra={"holder": self.holder, "error": cause(exc)})

    async def _pull(self, stop: asyncio.Event) -> None:
        ack_wait = job_ack_wait(self._response_timeout)
        cap = self.max_in_flight
        cfg = ConsumerConfig(durable_name=self.cfg.consumer, filter_subject=self.cfg.subject,
                             ack_wait=ack_wait, max_ack_pending=max(10000, 2 * cap))
        batch = max(1, min(cap, self.cfg.fetch_batch))
        sub = jsfast.PullConsumer(self.nc, bus.JOBS_STREAM, self.cfg.consumer,
                                  config=cfg, batch=batch, prefetch=2)
        await sub.start()
        bus.watch_lag(self.js, bus.JOBS_STREAM, self.cfg.consumer)
        low = max(1, min(batch, cap // 4))
        try:
            while not stop.is_set():
                room = cap - self._in_flight
                if room < low:
                    self._room.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._room.wait(), 0.5)
                    continue
                msgs = await sub.fetch(min(room, batch), timeout=0.5)
                if msgs:
                    self._in_flight += len(msgs)
                    self._spawn(self._start(msgs))
        finally:
            # Buffered jobs go back at once; the ones in hand finish (windows drain), for
            # at most as long as a submit, its retries and its recording can take.
            await sub.close(nak_buffered=True)
            limit = time.monotonic() + 3 * self._response_timeout + self.cfg.record_retry_for + 5
            while self._in_flight > 0 and time.monotonic() < limit:
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), 0.5)
            if self._in_flight > 0:
                log.error("stopping with %d jobs unfinished; JetStream redelivers them", self._in_flight)

    def _flush_counters(self) -> None:
        for route in self.routes.values():
            route.flush_counters()

    def _jobs_done(self, n: int) -> None:
        self._in_flight -= n
        if self._in_flight <= self.max_in_flight * 3 // 4 or self._in_flight <= 0:
            self._room.set()

    # --- jobs ---------------------------------------------------------------------------
    async def _start(self, msgs: list[jsfast.JsMsg]) -> None:
        """Parse and check a batch of jobs, claim them with one Redis call, queue them on
        their binds."""
        try:
            await self._start_batch(msgs)
        except Exception:  # a bug, not a bad job: hand back what was not dispatched
            left = [m for m in msgs if not m.settled and id(m) not in self._dispatched]
            log.exception("starting a batch of %d jobs failed; %d handed back", len(msgs), len(left))
            await quietly(jsfast.settle_many(left, jsfast.nak_payload(self.cfg.throttle_delay)))
            self._jobs_done(len(left))
        finally:
            for m in msgs:
                self._dispatched.discard(id(m))

    async def _start_batch(self, msgs: list[jsfast.JsMsg]) -> None:
        jobs: list[SubmitJob] = []
        now = time.time()
        bad: list[jsfast.JsMsg] = []
        prepare = self.preparer.prepare
        for msg in msgs:
            try:
                job = e.MessageJob.FromString(msg.data)
            except Exception as exc:
                log.error("dropping unprocessable job", extra={"reason": f"{msg.subject}: {exc}"})
                bad.append(msg)
                continue
            if not job.message_id:
                log.error("dropping unprocessable job", extra={"reason": "MessageJob without message_id"})
                bad.append(msg)
                continue
            if job.HasField("expires_at") and job.expires_at.seconds <= now:
                self._dispatched.add(id(msg))
                metrics.JOBS.labels("expired").inc()
                self.recorder.add(failed_now(msg, job, "EXPIRED", "job expired before it could be submitted",
                                             FC.FAILURE_CATEGORY_EXPIRED))
                continue
            try:
                jobs.append(prepare(msg, job))
            except JobRejected as exc:
                self._dispatched.add(id(msg))
                metrics.JOBS.labels("failed").inc()
                self.recorder.add(failed_now(msg, job, exc.code, str(exc), exc.category))
        if bad:
            bus.BUS_MESSAGES.labels(self.cfg.consumer, "term").inc(len(bad))
            await quietly(jsfast.settle_many(bad, b"+TERM"))
            self._jobs_done(len(bad))
        if jobs:
            await self.claims.claim(jobs)

    async def _gate(self, items: list[SubmitJob]) -> list[bool]:
        """SmppClient's pre-write gate: our held markers -> written, one call per write."""
        return await self.store.mark_written([(j.ident.message_id, j.ident.attempt) for j in items],
                                             self.holder)

    # --- inbound deliver_sm -------------------------------------------------------------
    def _sink_for(self, rc: RouteConfig) -> Callable[[pdu.Frame, Callable[[int], None]], None]:
        def sink(frame: pdu.Frame, reply: Callable[[int], None]) -> None:
            self.inbound.on_deliver(self.routes[rc.name], frame, reply)
        return sink
