"""A bind's submit queue: submits wait in a FIFO and are written while the window has room,
the token bucket allows and no throttling pause runs; each result goes to the item's
`on_result` (no task or future per message). Items that need it pass the pre-write `gate`
first: one gate call for all the items that became writable while the previous call ran,
so "possibly sent" starts exactly at the write."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from gateways.smpp import metrics, pdu
from gateways.smpp.session_config import ClientConfig
from gateways.smpp.session_errors import NotBound, NotWritten
from gateways.smpp.session_inflight import resolve_future
from gateways.smpp.session_link import Session
from gateways.smpp.session_pacing import TokenBucket

log = logging.getLogger("herald.smpp.session")

# Before a write: which of these items may be written (one verdict each, in order).
Gate = Callable[[list["SubmitItem"]], Awaitable[list[bool]]]


class SubmitItem(Protocol):
    """What SmppClient.enqueue takes: builds its PDU for a sequence number and gets its
    result (the response frame, or NotBound / ResponseTimeout / ConnectionLost)."""

    queued_at: float
    sent_at: float
    needs_gate: bool  # the client's gate must confirm it before its first write

    def build_pdu(self, sequence: int) -> bytes: ...

    def on_result(self, result: Any) -> None: ...


class _FutureItem:
    __slots__ = ("build_pdu", "fut", "queued_at", "sent_at")
    needs_gate = False

    def __init__(self, build: Callable[[int], bytes], fut: asyncio.Future[pdu.Frame]) -> None:
        self.build_pdu = build
        self.fut = fut
        self.queued_at = self.sent_at = 0.0

    def on_result(self, result: Any) -> None:
        resolve_future(self.fut, result)


class SubmitQueue:
    """SmppClient's write side (SmppClient.__init__ sets the attributes below)."""

    cfg: ClientConfig
    gate: Gate | None
    session: Session | None
    bound: asyncio.Event
    window_size: int
    in_use: int  # submits written and awaiting their response (or their bucket slot)
    bucket: TokenBucket
    paused_until: float
    _gating: list[SubmitItem]  # waiting for the next gate call (window slots taken)
    _gate_task: asyncio.Task[None] | None
    _queue: deque[SubmitItem]
    _timer: asyncio.TimerHandle | None  # a pause or a bucket slot to wait for
    _held: SubmitItem | None  # popped, its bucket slot reserved
    _stop: asyncio.Event
    _label: str

    @property
    def free(self) -> int:
        """Window slots not taken by written or queued submits (negative when queued)."""
        return self.window_size - self.in_use - len(self._queue)

    @property
    def queued(self) -> int:
        return len(self._queue) + (self._held is not None)

    def throttled(self, delay: float) -> None:
        """The SMSC said ESME_RTHROTTLED / ESME_RMSGQFUL: pause this bind and slow it down."""
        self.paused_until = max(self.paused_until, time.monotonic() + delay)
        self.bucket.slow_down()
        metrics.THROTTLING.labels(self._label).inc()

    def enqueue(self, item: SubmitItem) -> None:
        """Submit `item` as soon as the window, bucket and pause allow; its on_result is
        called exactly once."""
        item.queued_at = time.monotonic()
        self._queue.append(item)
        if self._timer is None:
            self._pump()

    def _pump(self) -> None:
        q = self._queue
        session = self.session
        if not q or session is None or not session.bound or session.closed.is_set():
            return
        if self.paused_until:
            wait = self.paused_until - time.monotonic()
            if wait > 0:
                self._schedule(wait)
                return
            self.paused_until = 0.0
        cap = self.window_size
        bucket = self.bucket if self.bucket.rate > 0 else None
        while q and self.in_use < cap:
            item = q.popleft()
            if bucket is not None:
                wait = bucket.reserve()
                if wait > 0:  # the slot is reserved for this item: send it then
                    self._held = item
                    self.in_use += 1
                    self._schedule(wait)
                    return
            if not self._send(session, item):
                return

    def _send(self, session: Session, item: SubmitItem) -> bool:
        if item.needs_gate and self.gate is not None:
            # Its window slot is taken now; it is written once the gate confirms it, together
            # with the others that became writable meanwhile (_run_gate).
            self.in_use += 1
            self._gating.append(item)
            if self._gate_task is None:
                self._gate_task = asyncio.create_task(self._run_gate())
            return True
        self.in_use += 1
        item.sent_at = time.perf_counter()
        try:
            session.send_cb(item.build_pdu, self._done, item)
        except NotBound:  # the session just closed: wait for the next one
            self.in_use -= 1
            self._queue.appendleft(item)
            return False
        return True

    async def _run_gate(self) -> None:
        """One gate call at a time per bind: items freed while it runs go into the next."""
        gate = self.gate
        assert gate is not None
        try:
            while self._gating:
                batch, self._gating = self._gating, []
                try:
                    verdicts: list[bool] | Exception = await gate(batch)
                except Exception as exc:  # nothing was written: each item hears why
                    verdicts = exc
                self._after_gate(batch, verdicts)
        finally:
            self._gate_task = None

    def _after_gate(self, batch: list[SubmitItem], verdicts: list[bool] | Exception) -> None:
        self.in_use -= len(batch)
        back: list[SubmitItem] = []
        session = self.session
        for i, item in enumerate(batch):
            if isinstance(verdicts, Exception):
                self._result(item, NotWritten(f"send marker not confirmed: {type(verdicts).__name__}: {verdicts}"))
            elif not verdicts[i]:
                self._result(item, NotWritten("the job is held by another process", elsewhere=True))
            else:
                item.needs_gate = False  # confirmed: later parts and retries go straight out
                if self._stop.is_set() or session is None or not session.bound:
                    back.append(item)  # no session now: waits for the next bind (or expires)
                elif not self._send(session, item):
                    session = None  # it closed: this item went back to the queue
        if back:
            self._queue.extendleft(reversed(back))
        if self._queue and self._timer is None:
            self._pump()

    @staticmethod
    def _result(item: SubmitItem, result: Any) -> None:
        try:
            item.on_result(result)
        except Exception:
            log.exception("submit result handler failed")

    def _schedule(self, wait: float) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(wait, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        item, self._held = self._held, None
        if item is not None:
            self.in_use -= 1
            session = self.session
            if session is None or not session.bound or not self._send(session, item):
                self._queue.appendleft(item)
        self._pump()

    def _done(self, item: SubmitItem, result: Any) -> None:
        self.in_use -= 1
        if isinstance(result, pdu.Frame):
            metrics.SUBMIT_LATENCY.observe(time.perf_counter() - item.sent_at)
            if result.status == pdu.ESME_ROK and self.bucket.factor < 1.0:
                self.bucket.recover()
        try:
            item.on_result(result)
        except Exception:
            log.exception("submit result handler failed")
        if self._queue and self._timer is None:
            self._pump()

    def _fail_queued(self, older_than: float, reason: str) -> None:
        """Fail queued items (nothing was sent for them) waiting since before `older_than`."""
        q = self._queue
        keep: deque[SubmitItem] = deque()
        failed: list[SubmitItem] = []
        for item in q:
            (failed if item.queued_at <= older_than else keep).append(item)
        self._queue = keep
        if self._held is not None and self._held.queued_at <= older_than:
            failed.append(self._held)
            self._held = None
            self.in_use -= 1
        for item in failed:
            try:
                item.on_result(NotBound(reason))
            except Exception:
                log.exception("submit result handler failed")

    async def _expire_unbound(self) -> None:
        """Queued items do not wait for a bind longer than response_timeout."""
        step = max(0.01, min(0.25, self.cfg.response_timeout / 4))
        while True:
            await asyncio.sleep(step)
            if self._queue and not self.bound.is_set():
                self._fail_queued(time.monotonic() - self.cfg.response_timeout,
                                  "no bound SMPP session")

    async def submit_pdu(self, build: Callable[[int], bytes]) -> pdu.Frame:
        """submit_sm within the window. Raises NotBound (nothing sent) or ResponseTimeout /
        ConnectionLost (sent, outcome unknown); any command_status is returned."""
        fut: asyncio.Future[pdu.Frame] = asyncio.get_running_loop().create_future()
        self.enqueue(_FutureItem(build, fut))
        return await fut

    async def submit(self, **fields: Any) -> pdu.Frame:
        return await self.submit_pdu(lambda seq: pdu.encode_submit_sm(seq, **fields))
