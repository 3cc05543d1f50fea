"""What a channel's send() reports per job, turned into the runtime's state of the job."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gateways.core.channel import Job
from gateways.core.outcome import Outcome

if TYPE_CHECKING:
    from gateways.core.runtime import Runtime

NOT_WRITTEN_RETRY = 1.0  # nak delay of a job whose claim was lost before its content went out


class Reporter:
    """One per round of a batch. Streaming channels get each outcome committed at once
    (group-committed with whatever else arrives meanwhile; counted here, no future per
    job); the others' outcomes are committed together when send() returns."""

    __slots__ = ("_rt", "_stream", "_put", "_pending", "_waiter", "_error", "_unreported",
                 "_all")

    def __init__(self, rt: Runtime, jobs: int = 0) -> None:
        self._rt = rt
        self._stream = rt.channel.streams_outcomes
        self._put = rt.recorder.stream  # bound once: called per streamed job
        self._pending = 0  # streamed jobs whose commit has not ended
        self._waiter: asyncio.Future[None] | None = None
        self._error: Exception | None = None
        self._unreported = jobs  # jobs of send() not yet reported (streaming channels)
        self._all: asyncio.Future[None] | None = None

    def outcome(self, job: Job, outcome: Outcome) -> None:
        job.outcome = outcome
        if self._stream and not job.reported:
            self._commit(job)

    def accepted(self, job: Job, outcome: Outcome) -> None:
        value = self._rt.gate.accepted(job.ticket, outcome, job)
        if value is not None:
            job.accepted = (outcome, value)

    def unwritten(self, job: Job) -> None:
        # Nothing of it was written: whoever holds the claim now (or, if Redis lost it, the
        # redelivery under shared.epoch's rule, knowing it was not sent) decides.
        self._hand_back(job, NOT_WRITTEN_RETRY)

    def handed_back(self, job: Job, delay: float) -> None:
        job.reopen = True  # its marker may say written: the carrier's answer says not taken
        self._hand_back(job, delay)

    def _hand_back(self, job: Job, delay: float) -> None:
        job.retry, job.result = delay, "not_written"
        self._rt.handed_back.put((job.job.message_id, job.job.attempt), job.delivery)
        if self._stream and not job.reported:
            self._commit(job)

    def _commit(self, job: Job) -> None:
        job.reported = True
        job.waiter = self
        self._pending += 1
        self._put(job)
        self._unreported -= 1
        if self._unreported <= 0 and self._all is not None and not self._all.done():
            self._all.set_result(None)

    async def reported(self) -> None:
        """Until every job given to send() has its outcome or was handed back (a streaming
        channel awaits this before send() returns)."""
        if self._unreported > 0:
            self._all = asyncio.get_running_loop().create_future()
            await self._all

    def committed(self, n: int, exc: Exception | None) -> None:
        """The commit of n streamed jobs ended (exc: it failed)."""
        self._pending -= n
        if exc is not None and self._error is None:
            self._error = exc
        waiter = self._waiter
        if self._pending <= 0 and waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def streamed(self) -> None:
        """Until every streamed job's commit ended; the first failure raised."""
        if self._pending > 0:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        if self._error is not None:
            raise self._error

    def unreported(self, jobs: Sequence[Job]) -> None:
        """After send(): a job with no word about it is handed back without the memory that
        it is unsent (the channel did not say so)."""
        for job in jobs:
            if job.outcome is None and job.retry is None:
                job.retry, job.result = NOT_WRITTEN_RETRY, "not_written"
