"""ESME side of SMPP over asyncio: one bound TCP session (`Session`) and a client that keeps
one bound, reconnecting with backoff (`SmppClient`).

Requests are pipelined: each gets a sequence number and a future that its response
resolves; a semaphore bounds the submit_sm window. Inbound deliver_sm are handed to a
callback in their own task so receipts never hold up the responses behind them; the
callback's return value is the deliver_sm_resp command_status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateways.smpp import metrics, pdu, settings

log = logging.getLogger("herald.smpp.session")

DeliverHandler = Callable[[pdu.Frame], Awaitable[int]]

_HEADER_ONLY = {"enquire_link": pdu.ENQUIRE_LINK, "unbind": pdu.UNBIND}
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
    bind_mode: str = "transceiver"
    window: int = 100
    response_timeout: float = 10.0
    enquire_link_interval: float = 30.0
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0

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


class Session:
    """One TCP connection to the SMSC, bound once `open` returns."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 cfg: ClientConfig, on_deliver: DeliverHandler) -> None:
        self.reader = reader
        self.writer = writer
        self.cfg = cfg
        self.on_deliver = on_deliver
        self.closed = asyncio.Event()
        self.close_reason = ""
        self._seq = 0
        self._pending: dict[int, asyncio.Future[pdu.Frame]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reader_task: asyncio.Task[None] | None = None
        self._keepalive_task: asyncio.Task[None] | None = None
        self.bound = False

    @classmethod
    async def open(cls, cfg: ClientConfig, on_deliver: DeliverHandler) -> Session:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(cfg.host, cfg.port), cfg.response_timeout)
        session = cls(reader, writer, cfg, on_deliver)
        session._reader_task = asyncio.create_task(session._read_loop())
        try:
            await session._bind()
        except BaseException:
            await session.close(unbind=False)
            raise
        session._keepalive_task = asyncio.create_task(session._keepalive())
        return session

    async def _bind(self) -> None:
        resp = await self.request(
            _BIND_COMMANDS[self.cfg.bind_mode],
            system_id=self.cfg.system_id, password=self.cfg.password,
            system_type=self.cfg.system_type, addr_ton=0, addr_npi=0, address_range="",
        )
        if resp.status != pdu.ESME_ROK:
            raise BindFailed(resp.status)
        self.bound = True
        log.info("bound", extra={"smsc": f"{self.cfg.host}:{self.cfg.port}",
                                 "smsc_system_id": resp.text_field("system_id")})

    def _write(self, data: bytes) -> None:
        if self.closed.is_set():
            raise NotBound(f"session closed: {self.close_reason}")
        self.writer.write(data)

    async def request(self, command: str, timeout: float | None = None, **fields: Any) -> pdu.Frame:
        """Send a request and await its response (any command_status is returned, not raised).

        NotBound: nothing was sent. ResponseTimeout / ConnectionLost: sent, outcome unknown."""
        self._seq = seq = pdu.next_sequence(self._seq)
        if command in _HEADER_ONLY:
            data = pdu.header_only(_HEADER_ONLY[command], seq)
        else:
            data = pdu.encode(command, seq, **fields)
        fut: asyncio.Future[pdu.Frame] = asyncio.get_running_loop().create_future()
        self._pending[seq] = fut
        try:
            self._write(data)
            try:
                await self.writer.drain()
                async with asyncio.timeout(timeout or self.cfg.response_timeout):
                    return await fut
            except TimeoutError as exc:
                raise ResponseTimeout(f"no response to {command} #{seq}") from exc
            except ConnectionError as exc:
                raise ConnectionLost(f"{command} #{seq}: {exc}") from exc
        finally:
            self._pending.pop(seq, None)

    def _reply(self, data: bytes) -> None:
        with contextlib.suppress(NotBound):
            self._write(data)

    async def _read_loop(self) -> None:
        reason = "closed"
        try:
            while True:
                frame = await pdu.read_frame(self.reader)
                if frame.is_response:
                    fut = self._pending.get(frame.sequence)
                    if fut is not None and not fut.done():
                        fut.set_result(frame)
                    else:
                        log.info("response without a request (late?)",
                                 extra={"command": frame.name, "sequence": frame.sequence})
                    continue
                self._on_request(frame)
        except asyncio.IncompleteReadError:
            reason = "connection closed by the SMSC"
        except (ConnectionError, OSError) as exc:
            reason = f"connection error: {exc}"
        except pdu.ProtocolError as exc:
            reason = f"protocol error: {exc}"
            log.error("closing on protocol error: %s", exc)
        finally:
            self._mark_closed(reason)

    def _on_request(self, frame: pdu.Frame) -> None:
        if frame.command_id == pdu.ENQUIRE_LINK:
            self._reply(pdu.header_only(pdu.ENQUIRE_LINK_RESP, frame.sequence))
        elif frame.command_id == pdu.DELIVER_SM:
            task = asyncio.create_task(self._deliver(frame))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif frame.command_id == pdu.UNBIND:
            self._reply(pdu.header_only(pdu.UNBIND_RESP, frame.sequence))
            self._mark_closed("unbound by the SMSC")
        else:
            self._reply(pdu.header_only(pdu.GENERIC_NACK, frame.sequence, pdu.ESME_RINVCMDID))

    async def _deliver(self, frame: pdu.Frame) -> None:
        try:
            status = await self.on_deliver(frame)
        except Exception:
            # Whatever went wrong, the SMSC keeps the PDU and sends it again later.
            log.exception("deliver_sm handler failed; asking the SMSC to retry")
            status = pdu.ESME_RX_T_APPN
        self._reply(pdu.encode("deliver_sm_resp", frame.sequence, status=status))

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
        for seq, fut in list(self._pending.items()):
            if not fut.done():
                fut.set_exception(ConnectionLost(f"#{seq}: {reason}"))
        self.writer.close()
        current = asyncio.current_task()
        for task in (self._keepalive_task, self._reader_task):
            if task is not None and task is not current:
                task.cancel()

    async def close(self, unbind: bool = True) -> None:
        if unbind and self.bound and not self.closed.is_set():
            with contextlib.suppress(SmppError):
                await self.request("unbind", timeout=min(2.0, self.cfg.response_timeout))
        # Let receipts being handled finish; their responses are lost if the socket is gone,
        # which only means the SMSC sends them again.
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self.cfg.response_timeout)
        self._mark_closed("closed by us")
        for task in (self._reader_task, self._keepalive_task):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


class SmppClient:
    """Keeps one session bound (reconnecting with exponential backoff) and submits through
    it within a window of outstanding submit_sm."""

    def __init__(self, cfg: ClientConfig, on_deliver: DeliverHandler) -> None:
        self.cfg = cfg
        self.on_deliver = on_deliver
        self.window = asyncio.Semaphore(cfg.window)
        self.session: Session | None = None
        self.bound = asyncio.Event()
        self.binds = 0  # successful binds so far (tests and logs)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        """Start connecting (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        return self._task

    async def _run(self) -> None:
        delay = self.cfg.reconnect_min
        while not self._stop.is_set():
            try:
                session = await Session.open(self.cfg, self.on_deliver)
            except BindFailed as exc:
                metrics.BIND_ATTEMPTS.labels(pdu.status_name(exc.status)).inc()
                log.error("%s", exc)
            except (OSError, TimeoutError, ResponseTimeout, ConnectionLost, NotBound,
                    pdu.ProtocolError) as exc:
                metrics.BIND_ATTEMPTS.labels("connect_failed").inc()
                log.warning("cannot bind to %s:%s: %s", self.cfg.host, self.cfg.port, exc)
            else:
                metrics.BIND_ATTEMPTS.labels("ok").inc()
                self.session = session
                self.binds += 1
                self.bound.set()
                metrics.BINDS_UP.inc()
                delay = self.cfg.reconnect_min
                stop_wait = asyncio.create_task(self._stop.wait())
                closed_wait = asyncio.create_task(session.closed.wait())
                await asyncio.wait({stop_wait, closed_wait}, return_when=asyncio.FIRST_COMPLETED)
                stop_wait.cancel()
                closed_wait.cancel()
                self.bound.clear()
                metrics.BINDS_UP.dec()
                if not session.closed.is_set():  # stopping: unbind politely
                    await session.close(unbind=True)
                else:
                    log.warning("session lost: %s", session.close_reason)
                    await session.close(unbind=False)
                self.session = None
                if self._stop.is_set():
                    return
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

    async def submit(self, **fields: Any) -> pdu.Frame:
        """submit_sm within the window. Raises NotBound (nothing sent) or ResponseTimeout /
        ConnectionLost (sent, outcome unknown); any command_status is returned."""
        async with self.window:
            metrics.WINDOW_IN_USE.inc()
            try:
                if not await self.wait_bound(self.cfg.response_timeout) or self.session is None:
                    raise NotBound("no bound SMPP session")
                start = time.perf_counter()
                resp = await self.session.request("submit_sm", **fields)
                metrics.SUBMIT_LATENCY.observe(time.perf_counter() - start)
                return resp
            finally:
                metrics.WINDOW_IN_USE.dec()

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
