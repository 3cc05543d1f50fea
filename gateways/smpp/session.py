"""ESME side of SMPP over asyncio.

`Session`: one bound TCP connection. An asyncio.Protocol frames PDUs straight out of the
receive buffer (no per-PDU awaits), a response is handed to the callback registered for its
sequence number (a future for the awaitable API), and a sweeper fails requests whose
response is late (ResponseTimeout). Writes made in one loop iteration go out in one
syscall.
`SmppClient`: one bind of a route -- a transceiver session, or a transmitter+receiver pair
-- kept up with reconnects (exponential backoff with jitter). Submits wait in a FIFO and
are written while the window has room, the token bucket (msg/s) allows and no throttling
pause runs; each result (response frame or error) goes to the item's `on_result`, so the
gateway drives thousands of messages without a task or future per message.
An optional `gate` sees the items of a socket write before their bytes go out (one call for
all the items that became writable while the previous call ran): the gateway confirms its
"written" send markers there, so "possibly sent" starts exactly at the write. An item the
gate refuses (or a gate that fails) gets NotWritten: nothing was sent.

Inbound deliver_sm go to a `DeliverSink(frame, reply)`: the sink calls `reply(status)`
exactly once when it is done (the deliver_sm_resp is written then), so receipts can be
handled in batches without a task per PDU. An async handler returning the status can be
given instead (wrapped in a task per PDU).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gateways.smpp import metrics, pdu, settings

log = logging.getLogger("herald.smpp.session")

Reply = Callable[[int], None]
DeliverSink = Callable[[pdu.Frame, Reply], None]
DeliverHandler = Callable[[pdu.Frame], Awaitable[int]]
# Before a write: which of these items may be written (one verdict each, in order).
Gate = Callable[[list["SubmitItem"]], Awaitable[list[bool]]]

_BIND_COMMANDS = {"transceiver": "bind_transceiver", "transmitter": "bind_transmitter",
                  "receiver": "bind_receiver"}


class SmppError(Exception):
    """Base of the session errors."""


class NotBound(SmppError):
    """No bound session: nothing was sent, so the request may safely be retried."""


class BindFailed(SmppError):
    def __init__(self, status: int) -> None:
        super().__init__(f"bind refused: {pdu.status_name(status)} ({pdu.status_description(status)})")
        self.status = status


class NotWritten(NotBound):
    """The pre-write gate refused the item (`elsewhere`: another process owns the job now)
    or failed (its cause in the message): nothing was sent."""

    def __init__(self, message: str, elsewhere: bool = False) -> None:
        super().__init__(message)
        self.elsewhere = elsewhere


class ResponseTimeout(SmppError):
    """The request was sent but no response came in time: its outcome is unknown."""


class ConnectionLost(SmppError):
    """The connection dropped after the request was sent: its outcome is unknown."""


@dataclass(frozen=True)
class ClientConfig:
    host: str
    port: int
    system_id: str
    password: str = ""
    system_type: str = ""
    bind_mode: str = "transceiver"  # transceiver, pair (transmitter + receiver), transmitter
    window: int = 100
    response_timeout: float = 10.0
    enquire_link_interval: float = 30.0
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    throughput: float = 0.0  # submit_sm per second, 0 = unlimited
    name: str = ""           # route/bind label for metrics and logs

    @classmethod
    def from_settings(cls) -> ClientConfig:
        return cls(
            host=settings.HOST.get(),
            port=settings.PORT.get_int(),
            system_id=settings.SYSTEM_ID.get(),
            password=settings.PASSWORD.get(),
            system_type=settings.SYSTEM_TYPE.get(),
            window=settings.WINDOW.get_int(),
            response_timeout=settings.RESPONSE_TIMEOUT.get_float(),
            enquire_link_interval=settings.ENQUIRE_LINK_INTERVAL.get_float(),
            reconnect_min=settings.RECONNECT_MIN.get_float(),
            reconnect_max=settings.RECONNECT_MAX.get_float(),
        )


class TokenBucket:
    """Paces submits to `rate` per second (GCRA: each caller reserves the next slot at once,
    so concurrent callers never race and the long-run rate is exact whatever the sleep
    granularity). `burst` slots may be used back to back after an idle spell."""

    def __init__(self, rate: float, burst: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.factor = 1.0  # < 1 while the SMSC is throttling us
        self.burst = burst
        self.clock = clock
        self._next = 0.0

    def reserve(self) -> float:
        """Seconds to wait before the reserved slot (0 when it is free now)."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        interval = 1.0 / (self.rate * self.factor)
        slot = max(self._next, now - (self.burst - 1) * interval)
        self._next = slot + interval
        return max(0.0, slot - now)

    async def acquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            await asyncio.sleep(wait)

    def slow_down(self) -> None:
        self.factor = max(0.1, self.factor * 0.8)

    def recover(self) -> None:
        if self.factor < 1.0:
            self.factor = min(1.0, self.factor * 1.01)


class _Protocol(asyncio.Protocol):
    def __init__(self, session: Session) -> None:
        self.session = session
        self.buf = bytearray()

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.mark_closed(f"connection error: {exc}" if exc else "connection closed by the SMSC")

    def pause_writing(self) -> None:
        self.session.writable.clear()

    def resume_writing(self) -> None:
        self.session.writable.set()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        n = len(buf)
        pos = 0
        on_frame = self.session.on_frame
        try:
            while n - pos >= 16:
                length = int.from_bytes(buf[pos:pos + 4], "big")
                if length < 16 or length > pdu.MAX_PDU_LENGTH:
                    raise pdu.ProtocolError(f"implausible command_length {length}")
                if n - pos < length:
                    break
                on_frame(bytes(buf[pos:pos + length]))
                pos += length
        except pdu.ProtocolError as exc:
            log.error("closing on protocol error: %s", exc)
            self.session.mark_closed(f"protocol error: {exc}")
            return
        finally:
            del buf[:pos]


class Session:
    """One TCP connection to the SMSC, bound once `open` returns."""

    def __init__(self, cfg: ClientConfig, on_deliver: DeliverSink, mode: str) -> None:
        self.cfg = cfg
        self.on_deliver = on_deliver
        self.mode = mode
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.Event()
        self.close_reason = ""
        self.bound = False
        self._seq = 0
        # seq -> (callback, its argument, deadline): callback(arg, Frame | SmppError)
        self._pending: dict[int, tuple[Callable[[Any, Any], None], Any, float]] = {}
        self._out: list[bytes] = []
        self.writable = asyncio.Event()  # cleared while the transport pauses writing
        self.writable.set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._replies_pending = 0
        self._timer_task: asyncio.Task[None] | None = None
        self._keepalive_task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, cfg: ClientConfig, on_deliver: DeliverSink, mode: str = "transceiver") -> Session:
        loop = asyncio.get_running_loop()
        session = cls(cfg, on_deliver, mode)
        transport, _ = await asyncio.wait_for(
            loop.create_connection(lambda: _Protocol(session), cfg.host, cfg.port),
            cfg.response_timeout)
        session.transport = transport  # type: ignore[assignment]
        session._timer_task = asyncio.create_task(session._sweep())
        try:
            await session._bind()
        except BaseException:
            await session.close(unbind=False)
            raise
        session._keepalive_task = asyncio.create_task(session._keepalive())
        return session

    async def _bind(self) -> None:
        resp = await self.request_pdu(lambda seq: pdu.encode(
            _BIND_COMMANDS[self.mode], seq,
            system_id=self.cfg.system_id, password=self.cfg.password,
            system_type=self.cfg.system_type, addr_ton=0, addr_npi=0, address_range=""))
        if resp.status != pdu.ESME_ROK:
            raise BindFailed(resp.status)
        self.bound = True
        log.info("bound", extra={"smsc": f"{self.cfg.host}:{self.cfg.port}", "mode": self.mode,
                                 "route": self.cfg.name, "smsc_system_id": resp.text_field("system_id")})

    def _write(self, data: bytes) -> None:
        if self.closed.is_set() or self.transport is None:
            raise NotBound(f"session closed: {self.close_reason}")
        out = self._out
        out.append(data)
        if len(out) == 1:  # first write of this loop iteration: flush at its end
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])

    def send_cb(self, build: Callable[[int], bytes], cb: Callable[[Any, Any], None], arg: Any,
                timeout: float | None = None) -> None:
        """Write a request; `cb(arg, result)` gets its response frame, or ResponseTimeout /
        ConnectionLost (sent, outcome unknown). NotBound is raised when nothing was sent."""
        if self.closed.is_set():
            raise NotBound(f"session closed: {self.close_reason}")
        self._seq = seq = pdu.next_sequence(self._seq)
        data = build(seq)
        self._pending[seq] = (cb, arg, time.monotonic() + (timeout or self.cfg.response_timeout))
        self._write(data)

    def send(self, build: Callable[[int], bytes],
             timeout: float | None = None) -> asyncio.Future[pdu.Frame]:
        """send_cb with a future for the result."""
        fut: asyncio.Future[pdu.Frame] = asyncio.get_running_loop().create_future()
        self.send_cb(build, _resolve, fut, timeout)
        return fut

    async def request_pdu(self, build: Callable[[int], bytes], timeout: float | None = None) -> pdu.Frame:
        fut = self.send(build, timeout)
        if not self.writable.is_set():
            await self.writable.wait()
        return await fut

    async def request(self, command: str, timeout: float | None = None, **fields: Any) -> pdu.Frame:
        """Send a request by smpplib name and await its response (any command_status is
        returned, not raised)."""
        if command == "enquire_link":
            return await self.request_pdu(lambda s: pdu.header_only(pdu.ENQUIRE_LINK, s), timeout)
        if command == "unbind":
            return await self.request_pdu(lambda s: pdu.header_only(pdu.UNBIND, s), timeout)
        if command == "submit_sm":
            return await self.request_pdu(lambda s: pdu.encode_submit_sm(s, **fields), timeout)
        return await self.request_pdu(lambda s: pdu.encode(command, s, **fields), timeout)

    def on_frame(self, raw: bytes) -> None:
        _length, command_id, status, seq = pdu.HEADER.unpack_from(raw)
        frame = pdu.Frame(command_id, status, seq, raw)
        if command_id & pdu.RESPONSE_BIT:
            entry = self._pending.pop(seq, None)
            if entry is not None:
                entry[0](entry[1], frame)
            elif command_id != pdu.GENERIC_NACK or seq:
                log.info("response without a request (late?)",
                         extra={"command": frame.name, "sequence": seq})
            return
        if command_id == pdu.DELIVER_SM:
            self._replies_pending += 1
            done = False

            def reply(status: int) -> None:
                nonlocal done
                if done:
                    return
                done = True
                self._replies_pending -= 1
                with contextlib.suppress(NotBound):
                    self._write(pdu.encode_deliver_sm_resp(seq, status))

            try:
                self.on_deliver(frame, reply)
            except Exception:
                log.exception("deliver_sm handler failed; asking the SMSC to retry")
                reply(pdu.ESME_RX_T_APPN)
        elif command_id == pdu.ENQUIRE_LINK:
            self._reply(pdu.header_only(pdu.ENQUIRE_LINK_RESP, seq))
        elif command_id == pdu.UNBIND:
            self._reply(pdu.header_only(pdu.UNBIND_RESP, seq))
            self.mark_closed("unbound by the SMSC")
        else:
            self._reply(pdu.header_only(pdu.GENERIC_NACK, seq, pdu.ESME_RINVCMDID))

    def _reply(self, data: bytes) -> None:
        with contextlib.suppress(NotBound):
            self._write(data)

    async def _sweep(self) -> None:
        """Fail requests whose response is overdue (one timer instead of one per PDU)."""
        step = max(0.01, min(0.25, self.cfg.response_timeout / 4))
        while not self.closed.is_set():
            await asyncio.sleep(step)
            now = time.monotonic()
            late = [seq for seq, entry in self._pending.items() if entry[2] <= now]
            for seq in late:
                cb, arg, _ = self._pending.pop(seq)
                cb(arg, ResponseTimeout(f"no response to #{seq} in time"))

    async def _keepalive(self) -> None:
        while not self.closed.is_set():
            await asyncio.sleep(self.cfg.enquire_link_interval)
            try:
                await self.request("enquire_link")
            except NotBound:
                return
            except (ResponseTimeout, ConnectionLost) as exc:
                log.warning("enquire_link failed, dropping the session: %s", exc)
                self.mark_closed(f"keep-alive failed: {exc}")
                return

    def mark_closed(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.close_reason = reason
        self.bound = False
        self.closed.set()
        self.writable.set()
        pending, self._pending = self._pending, {}
        if self.transport is not None:
            # What was written this iteration goes out first (e.g. an unbind_resp).
            self._flush()
            self.transport.close()
        for seq, (cb, arg, _) in pending.items():
            cb(arg, ConnectionLost(f"#{seq}: {reason}"))
        current = asyncio.current_task()
        for task in (self._keepalive_task, self._timer_task):
            if task is not None and task is not current:
                task.cancel()

    async def close(self, unbind: bool = True, drain: float | None = None) -> None:
        """Let the receipts being handled get their deliver_sm_resp, then unbind."""
        limit = time.monotonic() + (self.cfg.response_timeout if drain is None else drain)
        while self._replies_pending and time.monotonic() < limit and not self.closed.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if unbind and self.bound and not self.closed.is_set():
            with contextlib.suppress(SmppError):
                await self.request("unbind", timeout=min(2.0, self.cfg.response_timeout))
        self.mark_closed("closed by us")
        for task in (self._timer_task, self._keepalive_task):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def _resolve(fut: asyncio.Future[pdu.Frame], result: Any) -> None:
    if fut.done():
        return
    if isinstance(result, BaseException):
        fut.set_exception(result)
    else:
        fut.set_result(result)


def sink_from_handler(handler: DeliverHandler | DeliverSink) -> DeliverSink:
    """Accept an async `handler(frame) -> status` where a DeliverSink is expected."""
    if not inspect.iscoroutinefunction(handler):
        return handler  # type: ignore[return-value]
    tasks: set[asyncio.Task[None]] = set()

    async def run(frame: pdu.Frame, reply: Reply) -> None:
        try:
            status = await handler(frame)  # type: ignore[misc]
        except Exception:
            log.exception("deliver_sm handler failed; asking the SMSC to retry")
            status = pdu.ESME_RX_T_APPN
        reply(status)

    def sink(frame: pdu.Frame, reply: Reply) -> None:
        task = asyncio.create_task(run(frame, reply))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    return sink


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
        _resolve(self.fut, result)


# route -> its live binds (metrics.BindConfigCollector reads it when scraped)
CLIENTS_BY_ROUTE: dict[str, weakref.WeakSet[SmppClient]] = {}


def _window_gauge(label: str, client: SmppClient) -> None:
    """herald_smpp_window_in_use{route} sums the binds' counters when scraped (no gauge
    update per PDU)."""
    clients = CLIENTS_BY_ROUTE.get(label)
    if clients is None:
        clients = CLIENTS_BY_ROUTE[label] = weakref.WeakSet()
        metrics.WINDOW_IN_USE.labels(label).set_function(lambda: sum(c.in_use for c in clients))
    clients.add(client)


class SmppClient:
    """One bind: keeps its session(s) bound and writes queued submits while the window has
    room, the token bucket allows and no throttling pause runs. Items queued while no
    session is bound wait for the next bind, at most response_timeout (then NotBound:
    nothing was sent)."""

    def __init__(self, cfg: ClientConfig, on_deliver: DeliverHandler | DeliverSink,
                 gate: Gate | None = None) -> None:
        self.cfg = cfg
        self.on_deliver = sink_from_handler(on_deliver)
        self.gate = gate
        self._gating: list[SubmitItem] = []  # waiting for the next gate call (window slots taken)
        self._gate_task: asyncio.Task[None] | None = None
        self.window_size = cfg.window
        self.in_use = 0  # submits written and awaiting their response (or their bucket slot)
        self.bucket = TokenBucket(cfg.throughput)
        self.session: Session | None = None     # submits go here (trx or tx)
        self.receiver: Session | None = None    # rx of a pair
        self.bound = asyncio.Event()
        self.binds = 0  # successful binds so far (tests and logs)
        self.paused_until = 0.0
        self._queue: deque[SubmitItem] = deque()
        self._timer: asyncio.TimerHandle | None = None  # a pause or a bucket slot to wait for
        self._held: SubmitItem | None = None  # popped, its bucket slot reserved
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._expiry: asyncio.Task[None] | None = None
        self._label = cfg.name or "default"
        _window_gauge(self._label, self)

    def start(self) -> asyncio.Task[None]:
        """Start connecting (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run())
            self._expiry = asyncio.create_task(self._expire_unbound())
        return self._task

    async def _open(self) -> list[Session]:
        if self.cfg.bind_mode == "pair":
            tx = await Session.open(self.cfg, self.on_deliver, "transmitter")
            try:
                rx = await Session.open(self.cfg, self.on_deliver, "receiver")
            except BaseException:
                await tx.close(unbind=True, drain=0)
                raise
            return [tx, rx]
        return [await Session.open(self.cfg, self.on_deliver, self.cfg.bind_mode)]

    async def _run(self) -> None:
        delay = self.cfg.reconnect_min
        while not self._stop.is_set():
            try:
                sessions = await self._open()
            except BindFailed as exc:
                metrics.BIND_ATTEMPTS.labels(pdu.status_name(exc.status)).inc()
                log.error("%s", exc)
            except (OSError, TimeoutError, ResponseTimeout, ConnectionLost, NotBound,
                    pdu.ProtocolError) as exc:
                metrics.BIND_ATTEMPTS.labels("connect_failed").inc()
                log.warning("cannot bind to %s:%s: %s", self.cfg.host, self.cfg.port, exc)
            else:
                metrics.BIND_ATTEMPTS.labels("ok").inc()
                self.session = sessions[0]
                self.receiver = sessions[1] if len(sessions) > 1 else None
                self.binds += 1
                self.bound.set()
                self._pump()  # submits queued while unbound
                metrics.BINDS_UP.labels(self._label).inc()
                delay = self.cfg.reconnect_min
                waits = [asyncio.create_task(self._stop.wait()),
                         *(asyncio.create_task(s.closed.wait()) for s in sessions)]
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for w in waits:
                    w.cancel()
                self.bound.clear()
                metrics.BINDS_UP.labels(self._label).dec()
                lost = [s for s in sessions if s.closed.is_set()]
                for s in lost:
                    log.warning("session lost: %s", s.close_reason, extra={"route": self._label})
                # Stopping: the caller drained the window first, so unbind politely. A pair
                # whose other half died is unbound too before both are re-opened.
                await asyncio.gather(*(s.close(unbind=not s.closed.is_set()) for s in sessions))
                self.session = self.receiver = None
                if self._stop.is_set():
                    return
                if not lost:
                    continue
            # Jitter so replicas do not reconnect in lock step.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.cfg.reconnect_max)

    async def wait_bound(self, timeout: float) -> bool:
        if self.bound.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.bound.wait(), timeout)
        return self.bound.is_set()

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

    # --- the submit queue -----------------------------------------------------------
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

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        if self._expiry is not None:
            self._expiry.cancel()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._gate_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._gate_task
        self._fail_queued(float("inf"), "the SMPP client is closing")
