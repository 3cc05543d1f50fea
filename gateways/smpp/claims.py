"""Claiming a fetched batch of jobs (one Redis call: send marker "held" by this process, so
two pods never work on one job) and what a marker found there means.

Redelivered jobs (store.py has the marker states): an outcome is re-stated, never resent;
"held" by a process that is gone (or for far too long) is taken over and sent cleanly;
"written" by a process that is gone, without an outcome, is ABANDONED (FAILED, category
UNKNOWN: the SMSC may have accepted it). If Redis lost its data (shared.epoch moved on), a
redelivered job without a marker that was published before the new epoch may have been sent
under a lost marker: ABANDONED too (reason redis_lost), never resent, unless this process
handed its previous delivery back unwritten (unwritten.py).
"""

from __future__ import annotations

from collections.abc import Callable

from gateways.smpp import metrics, pdu
from gateways.smpp.binds import Route
from gateways.smpp.jobs import SubmitJob
from gateways.smpp.logs import cause, log, quietly
from gateways.smpp.outcomes import Abandons, refused
from gateways.smpp.store import RECLAIMED, Marker, Store
from gateways.smpp.submit import SubmitPolicy
from gateways.smpp.unwritten import UnwrittenJobs
from shared import bus, epoch, jsfast


def maybe_sent_before_loss(msg: jsfast.JsMsg, began: float) -> bool:
    """Claimed afresh, but delivered before and published before Redis's current data
    set began: its marker may have been lost with the rest (shared.epoch)."""
    try:
        meta = msg.metadata
    except ValueError:  # not a JetStream delivery (tests): nothing to judge by
        return False
    return epoch.maybe_sent_before_loss(meta.timestamp_ns / 1e9, meta.num_delivered, False, began)


class Claims:
    def __init__(self, store: Store, holder: str, consumer: str, throttle_delay: float,
                 response_timeout: float, stale_after: float, routes: dict[str, Route],
                 policy: SubmitPolicy, abandons: Abandons, unwritten: UnwrittenJobs,
                 dispatched: set[int], done: Callable[[int], None]) -> None:
        self.store = store
        self.holder = holder
        self.consumer = consumer
        self.throttle_delay = throttle_delay
        self.response_timeout = response_timeout
        # A held/written marker older than this is stale even if its holder still lives.
        self.stale_after = stale_after
        self.routes = routes
        self.policy = policy
        self.abandons = abandons
        self.unwritten = unwritten
        self.dispatched = dispatched  # id() of the jobs that went on their way
        self.done = done

    async def claim(self, jobs: list[SubmitJob]) -> None:
        """Claim the jobs with one Redis call; fresh claims are queued on their binds."""
        try:
            markers, began = await self.store.claim_many(
                [(j.ident.message_id, j.ident.attempt) for j in jobs], self.holder)
        except Exception as exc:  # Redis unavailable: nothing was sent, try again later
            log.warning("claiming jobs failed; redelivering them",
                        extra={"count": len(jobs), "error": cause(exc)})
            for j in jobs:
                self.unwritten.handed_back(j.ident, j.msg)
            bus.BUS_MESSAGES.labels(self.consumer, "nak").inc(len(jobs))
            await quietly(jsfast.settle_many([j.msg for j in jobs], jsfast.nak_payload(self.throttle_delay)))
            self.done(len(jobs))
            return
        seen: list[tuple[SubmitJob, Marker]] = []
        dispatched = self.dispatched
        for job, marker in zip(jobs, markers, strict=True):
            dispatched.add(id(job.msg))
            if marker is not None and marker is not RECLAIMED:
                seen.append((job, marker))
            elif marker is None and maybe_sent_before_loss(job.msg, began) \
                    and not self.unwritten.known(job.ident, job.msg):
                self.policy.complete(job, self.abandons.abandoned(job.ident, "redis_lost"))
            else:
                job.client = client = job.route.pick()
                client.enqueue(job)
        if seen:
            await self._replay_many(seen)

    async def _replay_many(self, seen: list[tuple[SubmitJob, Marker]]) -> None:
        """Jobs whose marker was there already: an outcome is re-stated (same event ids),
        never resubmitted; a held or written marker is judged by whether its holder lives."""
        holders = sorted({m.holder for _j, m in seen if m.holder})
        try:
            alive = await self.store.live_holders(holders)
        except Exception as exc:  # cannot tell: look again later
            log.warning("checking send-marker holders failed; redelivering their jobs",
                        extra={"count": len(seen), "error": cause(exc)})
            for job, _m in seen:
                self.policy.retry_later(job, "holder check failed", release=False)
            return
        takeovers: list[tuple[SubmitJob, Marker]] = []
        for job, marker in seen:
            state = marker.state
            if state in ("held", "written", "pending"):
                if state == "pending":  # an earlier version's marker (taken at fetch)
                    stale = marker.age() > 3 * self.response_timeout + 5
                else:
                    stale = marker.holder not in alive or marker.age() > self.stale_after
                if not stale:  # another process is sending it right now
                    self.policy.retry_later(job, "submit in progress elsewhere", self.response_timeout,
                                            release=False)
                elif state == "held":  # never written: ours to send now
                    takeovers.append((job, marker))
                else:  # written, no outcome: it may have reached the SMSC
                    self.policy.complete(job, self.abandons.abandoned(job.ident, "abandoned"))
            else:
                self._replay(job, marker)
        if takeovers:
            await self._take_over(takeovers)

    async def _take_over(self, items: list[tuple[SubmitJob, Marker]]) -> None:
        """Held markers of a process that is gone: ours if unchanged (compare-and-set, so
        that process could no longer move them to written), then sent like fresh claims."""
        try:
            won = await self.store.take_over(
                [(j.ident.message_id, j.ident.attempt, m.raw) for j, m in items], self.holder)
        except Exception as exc:
            log.warning("taking over stale send markers failed; redelivering their jobs",
                        extra={"count": len(items), "error": cause(exc)})
            won = [False] * len(items)
        for (job, _m), ok in zip(items, won, strict=True):
            if ok:
                metrics.JOBS.labels("taken_over").inc()
                job.client = client = job.route.pick()
                client.enqueue(job)
            else:
                self.policy.retry_later(job, "send marker changed meanwhile", release=False)

    def _replay(self, job: SubmitJob, marker: Marker) -> None:
        """An outcome on record: re-state it (same event ids), never resubmit."""
        ident = job.ident
        metrics.JOBS.labels("duplicate").inc()
        if marker.state == "ok":
            route_name, ids = marker.route_and_ids
            route = self.routes.get(route_name) or self.routes[ident.route]
            self.policy.complete_accepted(job, route, ids)
        elif marker.state == "failed":
            try:
                status = int(marker.value, 16)
            except ValueError:
                status = pdu.ESME_RSYSERR
            self.policy.complete(job, refused(ident, status, []))
        else:  # unknown:<reason>, or a state this version does not know: never resend
            self.policy.complete(job, self.abandons.unknown(ident, marker.value or marker.state, []))
