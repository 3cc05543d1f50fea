"""What each submit_sm_resp means for its job, told to the runtime (gateways.core: report).

ESME_ROK: the next part goes out, or (last part) the job is accepted: its acceptance rides
the write gate's next Redis call, its outcome is recorded at once. Parts accepted while later
ones are still to go are mapped at once (memory and Redis): under throttling the first parts'
receipts come first. ESME_RTHROTTLED / ESME_RMSGQFUL pause and slow the bind and hand the job
back with a delay (its claim reopened: the SMSC did not take it); later parts of a multipart
message are retried in place instead (earlier parts are out). ESME_RSYSERR is retried in
place with exponential backoff up to a limit; anything else is FAILED with the SMPP code, its
description and a failure category. No response (timeout, connection lost): FAILED as
unknown, never resubmitted. Nothing written (not bound, the gate refused): handed back.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gateways.core.group import GroupCommit
from gateways.smpp import metrics, outcomes, pdu
from gateways.smpp.jobs import SubmitJob, part_mappings
from gateways.smpp.logs import log
from gateways.smpp.matching import Matcher
from gateways.smpp.session import NotBound, NotWritten, ResponseTimeout
from gateways.smpp.store import Mapping, Store

# Refusals that mean "not now": the bind slows down and the job is redelivered later.
THROTTLE_STATUSES = {pdu.ESME_RTHROTTLED, pdu.ESME_RMSGQFUL}
RETRY_STATUSES = {pdu.ESME_RSYSERR, pdu.ESME_RX_T_APPN}


class SubmitPolicy:
    def __init__(self, store: Store, throttle_delay: float, syserr_retries: int,
                 response_timeout: float, matcher: Matcher) -> None:
        self.store = store
        self.throttle_delay = throttle_delay
        self.syserr_retries = syserr_retries
        self.response_timeout = response_timeout
        self.matcher = matcher
        # Mappings of parts accepted while later parts are still to go, stored at once
        # (other replicas may receive their receipts).
        self._part_writes: GroupCommit[tuple[Mapping, list[str]]] = GroupCommit(
            self._write_parts, max_size=512, concurrency=2, done=self._write_parts_failed)

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
                    self._accepted(job)
                return
            metrics.SUBMITS.labels(job.route.name, pdu.status_name(status)).inc()
            loop = asyncio.get_running_loop()
            client = job.client
            assert client is not None
            if status in THROTTLE_STATUSES:
                client.throttled(self.throttle_delay)
                if job.index == 0:  # the SMSC took nothing of it: sent again later
                    job.report.handed_back(job.it, self.throttle_delay)  # type: ignore[union-attr, arg-type]
                else:  # earlier parts are out: retry this one in place
                    loop.call_later(self.throttle_delay, client.enqueue, job)
                return
            if status in RETRY_STATUSES and job.retries < self.syserr_retries:
                loop.call_later(self.throttle_delay * 2 ** job.retries / 4, client.enqueue, job)
                job.retries += 1
                return
            self._complete(job, outcomes.refused(status, job.route.name, len(job.parts), job.ids))
            return
        if isinstance(result, NotWritten) and result.elsewhere:
            # Another process took the job over (we looked gone): it is theirs to send.
            job.report.handed_back(job.it, self.response_timeout)  # type: ignore[union-attr, arg-type]
            return
        if isinstance(result, NotBound):
            if not job.ids:  # nothing went out: a redelivery may submit it all
                job.report.handed_back(job.it, self.throttle_delay)  # type: ignore[union-attr, arg-type]
                return
            reason = "connection_lost"
        elif isinstance(result, ResponseTimeout):
            reason = "timeout"
        else:
            reason = "connection_lost"
        metrics.SUBMITS.labels(job.route.name, reason).inc()
        self._complete(job, outcomes.unknown(reason, job.route.name, len(job.parts), job.ids))

    def _accepted(self, job: SubmitJob) -> None:
        """Every part accepted: receipts for its ids wait for its recording in memory."""
        route = job.route
        outcome = outcomes.accepted(route.name, job.ids)
        parts = part_mappings(job.ident, route.name, route.id_format, job.ids)
        job.mappings = parts
        if parts:
            self.matcher.expect(job, parts)
        report = job.report
        assert report is not None and job.it is not None
        report.accepted(job.it, outcome)
        report.outcome(job.it, outcome)

    @staticmethod
    def _complete(job: SubmitJob, outcome: Any) -> None:
        assert job.report is not None and job.it is not None
        job.report.outcome(job.it, outcome)

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
        self._part_writes.put((m, keys))

    async def _write_parts(self, items: list[tuple[Mapping, list[str]]]) -> None:
        w = self.store.writes()
        for m, keys in items:
            self.store.add_part_mapping(w, m, keys)
        await self.store.apply(w)

    @staticmethod
    def _write_parts_failed(items: list[tuple[Mapping, list[str]]], exc: Exception | None) -> None:
        if exc is None:
            return
        # Not fatal: the message's recording writes every part's mapping again.
        log.warning("storing %d part mappings ahead of their message failed: %s", len(items), exc)
