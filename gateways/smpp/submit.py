"""What each submit_sm_resp means for its job.

ESME_ROK: the next part goes out, or (last part) the job is accepted and recorded. Parts
accepted while later ones are still to go are mapped at once (memory and Redis): under
throttling the first parts' receipts come first. ESME_RTHROTTLED / ESME_RMSGQFUL pause and
slow the bind and nak the job with a delay (later parts of a multipart message are retried
in place instead: earlier parts are out); ESME_RSYSERR is retried in place with exponential
backoff up to a limit; anything else is FAILED with the SMPP code, its description and a
failure category. No response (timeout, connection lost): FAILED as unknown, never
resubmitted. Nothing written (not bound, the gate refused): handed back, sent cleanly later.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gateways.smpp import metrics, pdu
from gateways.smpp.binds import Route
from gateways.smpp.jobs import SubmitJob
from gateways.smpp.logs import cause, log, quietly
from gateways.smpp.matching import Matcher
from gateways.smpp.outcomes import Abandons, Outcome, accepted, refused
from gateways.smpp.recording import Recorder
from gateways.smpp.session import NotBound, NotWritten, ResponseTimeout
from gateways.smpp.store import Flusher, Mapping, Store
from gateways.smpp.unwritten import UnwrittenJobs
from shared import bus

# Refusals that mean "not now": the bind slows down and the job is redelivered later.
THROTTLE_STATUSES = {pdu.ESME_RTHROTTLED, pdu.ESME_RMSGQFUL}
RETRY_STATUSES = {pdu.ESME_RSYSERR, pdu.ESME_RX_T_APPN}


class SubmitPolicy:
    def __init__(self, store: Store, holder: str, consumer: str, throttle_delay: float,
                 syserr_retries: int, response_timeout: float, matcher: Matcher,
                 recorder: Recorder, abandons: Abandons, unwritten: UnwrittenJobs,
                 spawn: Callable[[Awaitable[Any]], Any], done: Callable[[int], None]) -> None:
        self.store = store
        self.holder = holder
        self.consumer = consumer
        self.throttle_delay = throttle_delay
        self.syserr_retries = syserr_retries
        self.response_timeout = response_timeout
        self.matcher = matcher
        self.recorder = recorder
        self.abandons = abandons
        self.unwritten = unwritten
        self.spawn = spawn
        self.done = done
        # Mappings of parts accepted while later parts are still to go, stored at once
        # (other replicas may receive their receipts).
        self._part_writes: Flusher[tuple[Mapping, list[str]]] = Flusher(
            self._write_parts, self._write_parts_failed, concurrency=2)

    def on_result(self, job: SubmitJob, result: Any) -> None:
        """A submit_sm's response (or NotBound / ResponseTimeout / ConnectionLost)."""
        if isinstance(result, pdu.Frame):
            status = result.status
            if status == pdu.ESME_ROK:
                job.route.ok_submits += 1  # added to the counter per recorded batch
                smsc_id = pdu.resp_message_id(result.raw)
                job.ids.append(smsc_id)
                job.index += 1
                if job.index < len(job.parts):
                    if smsc_id:
                        self._part_accepted(job, smsc_id)
                    job.client.enqueue(job)  # type: ignore[union-attr]
                else:
                    self.complete_accepted(job, job.route, job.ids)
                return
            metrics.SUBMITS.labels(job.route.name, pdu.status_name(status)).inc()
            loop = asyncio.get_running_loop()
            client = job.client
            assert client is not None
            if status in THROTTLE_STATUSES:
                client.throttled(self.throttle_delay)
                if job.index == 0:
                    self.retry_later(job, f"SMSC answered {pdu.status_name(status)}")
                else:  # earlier parts are out: retry this one in place
                    loop.call_later(self.throttle_delay, client.enqueue, job)
                return
            if status in RETRY_STATUSES and job.retries < self.syserr_retries:
                loop.call_later(self.throttle_delay * 2 ** job.retries / 4, client.enqueue, job)
                job.retries += 1
                return
            self.complete(job, refused(job.ident, status, job.ids))
            return
        if isinstance(result, NotWritten) and result.elsewhere:
            # Another process took the job over (we looked gone): it is theirs to send.
            self.retry_later(job, str(result), self.response_timeout, release=False)
            return
        if isinstance(result, NotBound):
            if not job.ids:  # nothing went out: a redelivery may submit it all
                self.retry_later(job, f"not bound: {result}")
                return
            reason = "connection_lost"
        elif isinstance(result, ResponseTimeout):
            reason = "timeout"
        else:
            reason = "connection_lost"
        metrics.SUBMITS.labels(job.route.name, reason).inc()
        self.complete(job, self.abandons.unknown(job.ident, reason, job.ids))

    def complete_accepted(self, job: SubmitJob, route: Route, ids: list[str]) -> None:
        """Every part accepted (now, or on record from an earlier delivery)."""
        outcome = accepted(job.ident, route, ids)
        self.matcher.expect(outcome)
        self.complete(job, outcome)

    def complete(self, job: SubmitJob, outcome: Outcome) -> None:
        outcome.msg = job.msg
        if job.keys or job.parked:
            self.matcher.hand_over(job, outcome)
        self.recorder.add(outcome)

    def _part_accepted(self, job: SubmitJob, smsc_id: str) -> None:
        """A part accepted while later ones are still to go (they may wait seconds behind
        throttling): its mapping becomes visible now, in memory for this process's receipts
        and in Redis for the other replicas', instead of after the whole message."""
        ident, ids = job.ident, job.ids
        m = Mapping(ident.message_id, ident.campaign_id, ident.workspace_id, ident.attempt,
                    smsc_id, ident.to, ident.variant, len(ids), len(job.parts), job.route.name,
                    ids[0], time.time(), ident.sender)
        keys = job.route.id_format.store_keys(smsc_id)
        self.matcher.expect_part(job, m, keys)
        self._part_writes.add((m, keys))

    async def _write_parts(self, items: list[tuple[Mapping, list[str]]]) -> None:
        w = self.store.writes()
        for m, keys in items:
            self.store.add_part_mapping(w, m, keys)
        await self.store.apply(w)

    @staticmethod
    def _write_parts_failed(items: list[tuple[Mapping, list[str]]], exc: Exception) -> None:
        # Not fatal: the message's recording writes every part's mapping again.
        log.warning("storing %d part mappings ahead of their message failed: %s", len(items), exc)

    def retry_later(self, job: SubmitJob, reason: str, delay: float | None = None,
                    release: bool = True) -> None:
        """Nothing was submitted: drop our claim and let JetStream redeliver the job."""
        metrics.JOBS.labels("retry").inc()
        log.debug("job redelivered later", extra={"message_id": job.ident.message_id, "reason": reason})
        if release:  # ours, and not written: its next delivery may go out even if Redis forgot it
            self.unwritten.handed_back(job.ident, job.msg)
        self.spawn(self._release_and_nak(job, self.throttle_delay if delay is None else delay, release))

    async def _release_and_nak(self, job: SubmitJob, delay: float, release: bool) -> None:
        try:
            if release:
                mid, attempt = job.ident.message_id, job.ident.attempt
                await self.recorder.retrying(lambda: self.store.release(mid, attempt, self.holder))
        except Exception as exc:  # its held marker is taken over once stale
            log.warning("releasing a job's send marker failed",
                        extra={"message_id": job.ident.message_id, "error": cause(exc)})
        finally:
            bus.BUS_MESSAGES.labels(self.consumer, "nak").inc()
            await quietly(job.msg.nak(delay=delay))
            self.done(1)
