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
    (group-committed with whatever else arrives meanwhile); the others' outcomes are
    committed together when send() returns."""

    __slots__ = ("_rt", "_stream", "streamed")

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self._stream = rt.channel.streams_outcomes
        self.streamed: list[asyncio.Future[None]] = []

    def outcome(self, job: Job, outcome: Outcome) -> None:
        job.outcome = outcome
        if self._stream and not job.reported:
            job.reported = True
            self.streamed.append(self._rt.recorder.commit([job]))

    def accepted(self, job: Job, outcome: Outcome) -> None:
        self._rt.gate.accepted(job.ticket, outcome)

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
            job.reported = True
            self.streamed.append(self._rt.recorder.commit([job]))

    def unreported(self, jobs: Sequence[Job]) -> None:
        """After send(): a job with no word about it is handed back without the memory that
        it is unsent (the channel did not say so)."""
        for job in jobs:
            if job.outcome is None and job.retry is None:
                job.retry, job.result = NOT_WRITTEN_RETRY, "not_written"
