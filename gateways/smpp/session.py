"""ESME side of SMPP over asyncio.

`Session`: one bound TCP connection. An asyncio.Protocol frames PDUs straight out of the
receive buffer (no per-PDU awaits), responses resolve the future of their sequence number,
and a sweeper fails requests whose response is late (ResponseTimeout).
`SmppClient`: one bind of a route -- a transceiver session, or a transmitter+receiver pair
-- kept up with reconnects (exponential backoff with jitter), a window of outstanding
submit_sm, a token bucket (msg/s) and a pause after the SMSC throttles us.

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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateways.smpp import metrics, pdu, settings

log = logging.getLogger("herald.smpp.session")

Reply = Callable[[int], None]
DeliverSink = Callable[[pdu.Frame, Reply], None]
DeliverHandler = Callable[[pdu.Frame], Awaitable[int]]

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
        self.session._mark_closed(f"connection error: {exc}" if exc else "connection closed by the SMSC")

    def pause_writing(self) -> None:
        self.session._can_write.clear()

    def resume_writing(self) -> None:
        self.session._can_write.set()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        n = len(buf)
        pos = 0
        on_frame = self.session._on_frame
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
            self.session._mark_closed(f"protocol error: {exc}")
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
        self._pending: dict[int, tuple[asyncio.Future[pdu.Frame], float]] = {}
        self._can_write = asyncio.Event()
        self._can_write.set()
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
        self.transport.write(data)

    def send(self, build: Callable[[int], bytes],
             timeout: float | None = None) -> asyncio.Future[pdu.Frame]:
        """Write a request now; the future gets its response, or ResponseTimeout /
        ConnectionLost (sent, outcome unknown). NotBound is raised when nothing was sent."""
        if self.closed.is_set():
            raise NotBound(f"session closed: {self.close_reason}")
        self._seq = seq = pdu.next_sequence(self._seq)
        data = build(seq)
        fut: asyncio.Future[pdu.Frame] = asyncio.get_running_loop().create_future()
        deadline = time.monotonic() + (timeout or self.cfg.response_timeout)
        self._pending[seq] = (fut, deadline)
        self._write(data)
        return fut

    async def request_pdu(self, build: Callable[[int], bytes], timeout: float | None = None) -> pdu.Frame:
        fut = self.send(build, timeout)
        if not self._can_write.is_set():
            await self._can_write.wait()
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

    def _on_frame(self, raw: bytes) -> None:
        _length, command_id, status, seq = pdu.HEADER.unpack_from(raw)
        frame = pdu.Frame(command_id, status, seq, raw)
        if command_id & pdu.RESPONSE_BIT:
            entry = self._pending.pop(seq, None)
            if entry is not None and not entry[0].done():
                entry[0].set_result(frame)
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
            self._mark_closed("unbound by the SMSC")
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
            late = [seq for seq, (_f, deadline) in self._pending.items() if deadline <= now]
            for seq in late:
                fut, _ = self._pending.pop(seq)
                if not fut.done():
                    fut.set_exception(ResponseTimeout(f"no response to #{seq} in time"))

    async def _keepalive(self) -> None:
        while not self.closed.is_set():
            await asyncio.sleep(self.cfg.enquire_link_interval)
            try:
                await self.request("enquire_link")
            except NotBound:
                return
            except (ResponseTimeout, ConnectionLost) as exc:
                log.warning("enquire_link failed, dropping the session: %s", exc)
                self._mark_closed(f"keep-alive failed: {exc}")
                return

    def _mark_closed(self, reason: str) -> None:
        if self.closed.is_set():
            return
        self.close_reason = reason
        self.bound = False
        self.closed.set()
        self._can_write.set()
        for seq, (fut, _) in list(self._pending.items()):
            if not fut.done():
                fut.set_exception(ConnectionLost(f"#{seq}: {reason}"))
        self._pending.clear()
        if self.transport is not None:
            self.transport.close()
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
        self._mark_closed("closed by us")
        for task in (self._timer_task, self._keepalive_task):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task


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


class SmppClient:
    """One bind: keeps its session(s) bound and submits within the window, the token
    bucket and any throttling pause."""

    def __init__(self, cfg: ClientConfig, on_deliver: DeliverHandler | DeliverSink) -> None:
        self.cfg = cfg
        self.on_deliver = sink_from_handler(on_deliver)
        self.window = asyncio.Semaphore(cfg.window)
        self.in_use = 0
        self.bucket = TokenBucket(cfg.throughput)
        self.session: Session | None = None     # submits go here (trx or tx)
        self.receiver: Session | None = None    # rx of a pair
        self.bound = asyncio.Event()
        self.binds = 0  # successful binds so far (tests and logs)
        self.paused_until = 0.0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._label = cfg.name or "default"
        self._window_gauge = metrics.WINDOW_IN_USE.labels(self._label)

    def start(self) -> asyncio.Task[None]:
        """Start connecting (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run())
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
        return self.cfg.window - self.in_use

    def throttled(self, delay: float) -> None:
        """The SMSC said ESME_RTHROTTLED / ESME_RMSGQFUL: pause this bind and slow it down."""
        self.paused_until = max(self.paused_until, time.monotonic() + delay)
        self.bucket.slow_down()
        metrics.THROTTLING.labels(self._label).inc()

    async def submit_pdu(self, build: Callable[[int], bytes]) -> pdu.Frame:
        """submit_sm within the window. Raises NotBound (nothing sent) or ResponseTimeout /
        ConnectionLost (sent, outcome unknown); any command_status is returned."""
        async with self.window:
            self.in_use += 1
            self._window_gauge.inc()
            try:
                pause = self.paused_until - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
                await self.bucket.acquire()
                session = self.session
                if session is None or not session.bound:
                    if not await self.wait_bound(self.cfg.response_timeout) or self.session is None:
                        raise NotBound("no bound SMPP session")
                    session = self.session
                start = time.perf_counter()
                resp = await session.request_pdu(build)
                metrics.SUBMIT_LATENCY.observe(time.perf_counter() - start)
                if resp.status == pdu.ESME_ROK:
                    self.bucket.recover()
                return resp
            finally:
                self.in_use -= 1
                self._window_gauge.dec()

    async def submit(self, **fields: Any) -> pdu.Frame:
        return await self.submit_pdu(lambda seq: pdu.encode_submit_sm(seq, **fields))

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
