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
        # (ticket, the request it belongs to, its place in the request's answers)
        self._pending: list[tuple[Ticket, _Request, int]] = []
        self._accepted: list[tuple[str, str]] = []
        self._task: asyncio.Task[None] | None = None
        self.calls = 0  # Redis round trips (tests, bench)

    async def commit(self, item: Any) -> str | None:
        """One job about to be written (anything with a `ticket`, e.g. a QueuedMail)."""
        ticket: Ticket | None = item.ticket
        if ticket is None:  # not a claimed job (tests, tools): nothing to record
            return None
        [answer] = await self.commit_many((ticket,))
        return answer

    async def commit_many(self, tickets: Sequence[Ticket | None]) -> list[str | None]:
        """The jobs of one write (e.g. several PDUs in one socket write), answered together
        (one future per write, not per job)."""
        req = _Request(len(tickets))
        pending = self._pending
        for i, ticket in enumerate(tickets):
            if ticket is None:
                req.left -= 1
            else:
                pending.append((ticket, req, i))
        if req.left <= 0:
            return req.answers
        self._schedule()
        return await req.future

    def accepted(self, ticket: Ticket | None, outcome: Outcome) -> None:
        """The carrier took the job: record its outcome marker with the next flush (best
        effort; the recorder's own record of the outcome follows and repeats it)."""
        if ticket is None:
            return
        self._accepted.append((ticket.key, marker_value(SUBMITTED, time.time(), outcome)))
        self._schedule()

    def _schedule(self) -> None:
        if self._task is None:  # runs on the next loop pass: it collects this pass's requests
            self._task = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        batch: list[tuple[Ticket, _Request, int]] = []
        try:
            while self._pending or self._accepted:
                batch, self._pending = self._pending, []
                accepted, self._accepted = self._accepted, []
                self.calls += 1
                try:
                    done = await self.markers.mark_written([t for t, _, _ in batch], accepted)
                    answers: list[str | None] = [None if ok else CLAIM_LOST for ok in done]
                except Exception as exc:  # Redis down: nothing may be written
                    reason = f"{type(exc).__name__}: {exc}"
                    log.warning("send markers not moved to written", extra={
                        "reason": reason, "jobs": len(batch), "accepted": len(accepted)})
                    answers = [f"send marker not recorded: {reason}"] * len(batch)
                for (_, req, i), answer in zip(batch, answers, strict=True):
                    req.answer(i, answer)
        finally:
            self._task = None
            for _, req, i in batch + self._pending:  # cancelled mid-flush: nobody may write
                req.answer(i, "send marker not recorded: gateway stopping")
            self._pending = []


class _Request:
    """One commit_many: its answers, filled as the flushes give them (each once)."""

    __slots__ = ("answers", "given", "left", "future")

    def __init__(self, n: int) -> None:
        self.answers: list[str | None] = [None] * n
        self.given = [False] * n
        self.left = n
        self.future: asyncio.Future[list[str | None]] = asyncio.get_running_loop().create_future()

    def answer(self, i: int, answer: str | None) -> None:
        if self.given[i]:
            return
        self.given[i] = True
        self.answers[i] = answer
        self.left -= 1
        if self.left <= 0 and not self.future.done():
            self.future.set_result(self.answers)
