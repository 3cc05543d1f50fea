"""Group commit of held -> written, right before a job's bytes go to the carrier."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from gateways.core.markers import SUBMITTED, SendMarkers, Ticket
from gateways.core.outcome import Outcome, marker_value

log = logging.getLogger("herald.gateway.gate")

# commit()'s answer for a job whose claim is no longer this process's (the others: Redis
# could not be asked)
CLAIM_LOST = "send claim lost: another delivery took it over or Redis lost it"
STOPPING = "send marker not recorded: gateway stopping"


class WriteGate:
    """Group commit of held -> written: every carrier connection asks right before it writes
    the bytes that let the carrier accept a job (the end of a mail's DATA, a socket write of
    submit_sm PDUs), and the requests that arrive together go to Redis in one call.
    `commit(item)` returns None when the job may be written, else why not (the marker was
    taken over or lost, or Redis failed).

    The carrier's acceptance of a job (a relay's 250) is recorded through the same calls
    (`accepted`): with pipelining it arrives just before the next job's commit, so the
    outcome is in Redis within one round trip of the answer, at no extra call in steady
    state. A gateway killed mid-batch then leaves "written" without an outcome (ABANDONED on
    redelivery) only for jobs whose answer had not arrived, instead of for every job of the
    batch."""

    def __init__(self, markers: SendMarkers) -> None:
        self.markers = markers
        # (the tickets of one commit_many, the future of their answers), or (the ticket of
        # one commit, the future of its answer)
        self._pending: list[tuple[list[Ticket] | Ticket, asyncio.Future[Any]]] = []
        self._accepted: list[tuple[str, str]] = []
        self._accepted_by: list[Any] = []  # whose acceptance each is (told once it is stored)
        self._started = self._ended = 0  # Redis calls of _flush begun, ended
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []  # (call awaited, waiter)
        self._task: asyncio.Task[None] | None = None
        self.calls = 0  # Redis round trips (tests, bench)

    async def commit(self, item: Any) -> str | None:
        """One job about to be written (anything with a `ticket`, e.g. a QueuedMail)."""
        ticket: Ticket | None = item.ticket
        if ticket is None:  # not a claimed job (tests, tools): nothing to record
            return None
        # One job per call on the email path: its ticket alone (not a list) is queued and
        # answered with its answer alone, no list or commit_many frame per mail.
        fut: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._pending.append((ticket, fut))
        if self._task is None:
            self._task = asyncio.ensure_future(self._flush())
        return await fut

    async def commit_many(self, tickets: Sequence[Ticket | None]) -> list[str | None]:
        """The jobs of one write (e.g. several PDUs in one socket write), answered together
        (one future per write, not per job)."""
        claimed = [t for t in tickets if t is not None]
        if not claimed:
            return [None] * len(tickets)
        fut: asyncio.Future[list[str | None]] = asyncio.get_running_loop().create_future()
        self._pending.append((claimed, fut))
        self._schedule()
        answers = await fut
        if len(claimed) == len(tickets):
            return answers
        it = iter(answers)  # a job without a ticket (not claimed) is never refused
        return [None if t is None else next(it) for t in tickets]

    def accepted(self, ticket: Ticket | None, outcome: Outcome, by: Any = None) -> str | None:
        """The carrier took the job: record its outcome marker with the next flush (best
        effort; the recorder's own record of the outcome follows and repeats it unless it
        was stored already: `by.accepted_stored` is set then). The marker's value (for the
        recorder to reuse), None without a ticket."""
        if ticket is None:
            return None
        value = marker_value(SUBMITTED, time.time(), outcome)
        self._accepted.append((ticket.key, value))
        self._accepted_by.append(by)
        if self._task is None:  # _schedule(), inlined: once per accepted job
            self._task = asyncio.ensure_future(self._flush())
        return value

    async def acceptances_stored(self) -> None:
        """Until the acceptances queued so far were written (or their call failed): the
        recorder then need not write the same markers again."""
        target = self._started + (1 if self._accepted else 0)
        if self._ended >= target or self._task is None:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, fut))
        await fut

    def _ended_call(self, everyone: bool = False) -> None:
        self._ended = self._started
        if self._waiters:
            left = []
            for target, fut in self._waiters:
                if everyone or target <= self._ended:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    left.append((target, fut))
            self._waiters = left

    def _schedule(self) -> None:
        if self._task is None:  # runs on the next loop pass: it collects this pass's requests
            self._task = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        batch: list[tuple[list[Ticket] | Ticket, asyncio.Future[Any]]] = []
        try:
            while self._pending or self._accepted:
                if not self._pending:
                    # Acceptances alone: one loop pass first, for the writes they free (the
                    # next jobs of a window, or those the last call just answered) to ask:
                    # they go in the same call instead of one right after.
                    await asyncio.sleep(0)
                batch, self._pending = self._pending, []
                accepted, self._accepted = self._accepted, []
                by, self._accepted_by = self._accepted_by, []
                self.calls += 1
                self._started += 1
                tickets: list[Ticket] = []
                for ts, _ in batch:
                    if ts.__class__ is list:
                        tickets += ts  # type: ignore[arg-type]
                    else:
                        tickets.append(ts)  # type: ignore[arg-type]
                try:
                    done = await self.markers.mark_written(tickets, accepted)
                    answers: list[str | None] = [None if ok else CLAIM_LOST for ok in done]
                    for job in by:
                        if job is not None:
                            job.accepted_stored = True
                except Exception as exc:  # Redis down: nothing may be written
                    reason = f"{type(exc).__name__}: {exc}"
                    log.warning("send markers not moved to written", extra={
                        "reason": reason, "jobs": len(tickets), "accepted": len(accepted)})
                    answers = [f"send marker not recorded: {reason}"] * len(tickets)
                at = 0
                for ts, fut in batch:
                    if ts.__class__ is list:
                        n = len(ts)
                        if not fut.done():
                            fut.set_result(answers[at:at + n])
                        at += n
                    else:
                        if not fut.done():
                            fut.set_result(answers[at])
                        at += 1
                self._ended_call()
        finally:
            self._task = None
            self._ended_call(everyone=True)
            for ts, fut in batch + self._pending:  # cancelled mid-flush: nobody may write
                if not fut.done():
                    fut.set_result([STOPPING] * len(ts) if ts.__class__ is list else STOPPING)
            self._pending = []

