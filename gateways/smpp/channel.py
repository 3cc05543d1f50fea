"""SMS over SMPP as a channel of the runtime (gateways.core): a job becomes a SubmitJob
(addresses, rendered and encoded text, route) or, if it can never be sent, a FAILED outcome;
send() queues a batch on the binds of each job's route, each socket write asks the write
gate for exactly the jobs whose first submit_sm is in it (their "possibly sent" starts
there), and each outcome is reported as its submit_sm_resp(s) arrive (streamed: recorded at
once, group-committed with whatever else arrived). The id mappings ride the outcome's group
commit (after its event, before its ack); the binds, receipts and replies are its listener.

Send markers keep this gateway's key names (herald:smpp:job:<id>:<attempt>, liveness
herald:smpp:holder:<process>), so a rolling upgrade judges the markers of the gateway
before the runtime (outcomes.legacy_marker)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from nats.aio.client import Client as NATS

from gateways.core.channel import Job, Listener, Report
from gateways.core.gate import CLAIM_LOST, WriteGate
from gateways.core.markers import MarkerKeys
from gateways.core.outcome import Outcome
from gateways.core.outcome import failed as failed_outcome
from gateways.smpp import events, metrics, outcomes, pdu
from gateways.smpp.binds import Route
from gateways.smpp.config import GatewayConfig
from gateways.smpp.inbound import Inbound
from gateways.smpp.jobs import Preparer, SubmitJob, part_mappings
from gateways.smpp.logs import log
from gateways.smpp.matching import Matcher
from gateways.smpp.mo import Replies
from gateways.smpp.rejection import JobRejected
from gateways.smpp.routes import IdFormat, RouteConfig
from gateways.smpp.store import Mapping, Store
from gateways.smpp.submit import SubmitPolicy
from shared import jsfast

K = e  # top-level enum constants: EnumTypeWrapper lookups cost ~3 µs each (measured)
FC = c

MARKER_KEYS = MarkerKeys("herald:smpp:job:", "herald:smpp:ref:", "herald:smpp:holder:")
ABANDON_MEANING = {
    "worker_stopped": "its submit_sm was written by a gateway that stopped before recording the answer",
    "redis_lost": "its send marker was lost with Redis's data",
    "corrupt_marker": "its send marker is unreadable",
}


class GateRefused(Exception):
    """The write gate could not ask Redis: nothing of the write may go out."""


class SmppChannel:
    name = "smpp"
    channel = c.CHANNEL_SMS
    carrier = "SMSC"
    metrics = metrics.RUNTIME
    streams_outcomes = True  # windows: each job's answer comes on its own
    logger = "herald.smpp.gateway"
    abandon_event = "job abandoned: the SMSC may have accepted it; not resent"
    event_id = staticmethod(events.event_id)  # the ids this gateway's events always had

    def __init__(self, nc: NATS, store: Store, route_cfgs: list[RouteConfig],
                 cfg: GatewayConfig) -> None:
        self.store = store
        self.cfg = cfg
        self.publisher = jsfast.Publisher(nc, timeout=events.PUBLISH_TIMEOUT)
        self.routes = {r.name: Route(r, self._sink_for, self._gate) for r in route_cfgs}
        response_timeout = max(r.client.response_timeout for r in route_cfgs)
        self.matcher = Matcher(store, self.publisher, cfg.receipt_match_wait, cfg.receipt_retry_for)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.inbound = Inbound(store, self.publisher, self.matcher,
                               Replies(store, self.publisher, cfg.opt_out_keywords,
                                       cfg.receipt_retry_for), self._spawn, cfg.receipt_retry_for)
        self.policy = SubmitPolicy(store, cfg.throttle_delay, cfg.syserr_retries, response_timeout,
                                   self.matcher)
        self.preparer = Preparer(route_cfgs, self.routes, self.policy, cfg.default_sender,
                                 cfg.max_parts, cfg.udh16)
        self.gate: WriteGate | None = None  # the runtime's, from the first send()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- the runtime's interface ---------------------------------------------------
    def batch_limit(self) -> int | None:
        return None  # the in-flight cap (gateway.in_flight_cap) bounds rate-limited routes

    def ref(self, job: e.MessageJob) -> str | None:
        return None  # receipts find their message through the id mappings

    def prepare(self, job: e.MessageJob) -> SubmitJob | Outcome:
        try:
            return self.preparer.prepare(job)
        except JobRejected as exc:
            return outcomes.rejected(exc.code, str(exc), exc.category)

    async def send(self, jobs: list[Job], gate: WriteGate, report: Report) -> None:
        """Queue the jobs on their binds; return once each is reported."""
        self.gate = gate
        for it in jobs:
            sj: SubmitJob = it.prepared
            sj.it, sj.report = it, report
            sj.client = client = sj.route.pick()
            client.enqueue(sj)
        await report.reported()

    async def _gate(self, items: list[SubmitJob]) -> list[bool]:
        """SmppClient's pre-write gate: the markers of the jobs of one write, held -> written
        in the runtime's write gate (with every other bind's writes of the moment)."""
        gate = self.gate
        assert gate is not None
        answers = await gate.commit_many([sj.it.ticket for sj in items])  # type: ignore[union-attr]
        verdicts = []
        for answer in answers:
            if answer is not None and answer != CLAIM_LOST:
                raise GateRefused(answer)
            verdicts.append(answer is None)
        return verdicts

    async def record(self, jobs: Sequence[Job]) -> None:
        """The id mappings (and reply links) of the accepted jobs, after their SUBMITTED is
        stored: a receipt's event never overtakes it (early receipts wait in memory)."""
        store = self.store
        w = store.writes()
        for it in jobs:
            o = it.outcome
            if o is None or o.kind != K.MESSAGE_EVENT_KIND_SUBMITTED:
                continue
            sj = it.prepared
            parts = sj.mappings if sj is not None else self._replayed(it.job, o)
            if parts:
                store.add_mappings(w, parts)
        await store.apply(w)

    def _replayed(self, job: e.MessageJob, o: Outcome) -> list[tuple[Mapping, list[str]]]:
        """The mappings of an outcome on record (a redelivery, nothing sent): from its ids."""
        ids = o.extra.split(",") if o.extra else [o.provider_id]
        route = self.routes.get(o.route)
        try:
            ident = self.preparer.ident(job, o.route, len(ids))
        except JobRejected:
            return []
        return part_mappings(ident, o.route, route.id_format if route else IdFormat(), ids)

    def recorded(self, jobs: Sequence[Job], stored: bool) -> None:
        recorded = self.matcher.recorded
        for it in jobs:
            sj = it.prepared
            if sj is not None:
                if sj.keys or sj.parked:
                    recorded(sj, stored)
                # job <-> SubmitJob: without the cycle both are freed by reference count, not
                # left to the garbage collector (the submit path without I/O, measured: 54 ->
                # 41 us of CPU per job)
                sj.it = sj.report = None
        for route in self.routes.values():
            route.flush_counters()

    def exhausted(self, last: Outcome, deliveries: int) -> Outcome:
        return failed_outcome(f"gave up after {deliveries} deliveries: {last.description}",
                              last.category or FC.FAILURE_CATEGORY_CARRIER_REJECTED, last.code)

    def abandon_meaning(self, reason: str) -> str:
        return ABANDON_MEANING.get(reason, reason)

    def abandoned(self, job: e.MessageJob, reason: str) -> Outcome:
        """As it would have gone: its route and part count, if it can be prepared."""
        try:
            sj = self.preparer.prepare(job)
        except JobRejected:
            return outcomes.abandoned()
        return outcomes.abandoned(sj.route.name, len(sj.parts))

    def expired(self, job: e.MessageJob) -> Outcome:
        return outcomes.rejected("EXPIRED", "job expired before it could be submitted",
                                 FC.FAILURE_CATEGORY_EXPIRED)

    def listeners(self) -> Sequence[Listener]:
        return [Binds(self)]

    # --- inbound deliver_sm ---------------------------------------------------------
    def _sink_for(self, rc: RouteConfig) -> Callable[[pdu.Frame, Callable[[int], None]], None]:
        def sink(frame: pdu.Frame, reply: Callable[[int], None]) -> None:
            self.inbound.on_deliver(self.routes[rc.name], frame, reply)
        return sink


class Binds:
    """The routes' binds, with receipts and replies: up before the first job, unbound after
    the drain (the SMSC is given each receipt's answer first)."""

    def __init__(self, channel: SmppChannel) -> None:
        self.channel = channel

    async def start(self) -> None:
        await self.channel.publisher.start()
        for r in self.channel.routes.values():
            r.start()

    async def stop(self) -> None:
        ch = self.channel
        await asyncio.gather(*(r.close() for r in ch.routes.values()))
        ch.matcher.drop_waiting()
        await ch.publisher.close()
        for route in ch.routes.values():
            route.flush_counters()
        log.debug("binds closed")
