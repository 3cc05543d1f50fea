"""Recording finished jobs, group-committed: the outcomes finished while a flush runs go
together into the next one: markers ok:<route>|<ids> (one script call) -> publish their
events (acks awaited together) -> store the id mappings (one script call) -> ack their jobs
(one write), in that order for every job. Mappings are written after SUBMITTED so a
receipt's event can never overtake it on the bus (early receipts wait in memory, see
matching.py). Retried in place on Redis/NATS trouble (leaving it to a redelivery would lose
the SMSC ids); after record_retry_for the jobs are handed back and their markers decide."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from gateways.core.retrying import retrying
from gateways.smpp import events, metrics
from gateways.smpp.logs import cause, log, quietly
from gateways.smpp.outcomes import Outcome
from gateways.smpp.store import Flusher, Store
from shared import bus, jsfast


class Recorder:
    """At most `concurrency` flushes run at once. `flush(outcomes)` is the recording step
    (record_many); `recorded(outcome, stored)` and `done(n)` are told when it ended."""

    def __init__(self, store: Store, publisher: jsfast.Publisher, consumer: str, retry_for: float,
                 recorded: Callable[[Outcome, bool], None], done: Callable[[int], None],
                 flush_counters: Callable[[], None], max_size: int = 1024, concurrency: int = 4) -> None:
        self.store = store
        self.publisher = publisher
        self.consumer = consumer
        self.retry_for = retry_for
        self.recorded = recorded
        self.done = done
        self.flush_counters = flush_counters
        self.flush: Callable[[list[Outcome]], Awaitable[Any]] = self.record_many
        self._flusher: Flusher[Outcome] = Flusher(self._commit, self._commit_failed, max_size,
                                                  concurrency)
        # Metric children of the per-batch path, looked up once.
        self._acked = bus.BUS_MESSAGES.labels(consumer, "ack")
        self._jobs_submitted = metrics.JOBS.labels("submitted")

    def add(self, outcome: Outcome) -> None:
        self._flusher.add(outcome)

    async def retrying(self, step: Callable[[], Awaitable[Any]]) -> None:
        """Run `step`, retried with backoff for up to retry_for (then its error is raised)."""
        await retrying(step, self.retry_for, log, "recording submit outcomes")

    async def record_many(self, outcomes: list[Outcome]) -> list[None]:
        """Markers (one script call) -> events (acks awaited together) -> mappings (one script call)."""
        store = self.store
        w = store.writes()
        for o in outcomes:
            if o.marker is not None:
                store.add_mark(w, o.ident.message_id, o.ident.attempt, *o.marker)
        await store.apply(w)
        await events.publish_many(self.publisher, [o.event for o in outcomes if o.event is not None])
        w = store.writes()
        for o in outcomes:
            if o.parts:
                store.add_mappings(w, o.parts)
        await store.apply(w)
        return [None] * len(outcomes)

    @staticmethod
    def _commit_failed(batch: list[Outcome], exc: Exception) -> None:
        log.error("committing outcomes failed", exc_info=exc,
                  extra={"count": len(batch), "error": cause(exc)})

    async def _commit(self, batch: list[Outcome]) -> None:
        msgs = [o.msg for o in batch if o.msg is not None]
        stored = False
        try:
            await self.retrying(lambda: self.flush(batch))
            stored = True
        except Exception as exc:
            # Redis/NATS gone for longer than record_retry_for: the jobs come back later and
            # their markers say what was done (replayed, never resubmitted).
            log.error("recording outcomes failed; redelivering their jobs (their markers decide: "
                      "replayed or ABANDONED, never resubmitted)",
                      extra={"count": len(batch), "error": cause(exc),
                             "retried_for_s": self.retry_for})
            await quietly(jsfast.settle_many(msgs, jsfast.nak_payload(1.0)))
            bus.BUS_MESSAGES.labels(self.consumer, "nak").inc(len(msgs))
        else:
            await quietly(jsfast.settle_many(msgs))
            self._acked.inc(len(msgs))
            self._jobs_submitted.inc(sum(1 for o in batch if o.marker is not None and o.marker[0] == "ok"))
        finally:
            self.flush_counters()
            recorded = self.recorded
            for o in batch:
                recorded(o, stored)
            self.done(len(msgs))
