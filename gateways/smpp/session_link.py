"""One bound TCP connection to the SMSC (`Session`): connect and bind, enquire_link while
idle, unbind and close; the writes of one loop iteration go out in one syscall. Its request
side is session_inflight, its read side session_reader."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from gateways.smpp import pdu
from gateways.smpp.session_config import ClientConfig
from gateways.smpp.session_errors import (
    BindFailed,
    ConnectionLost,
    NotBound,
    ResponseTimeout,
    SmppError,
)
from gateways.smpp.session_inflight import InFlight, InFlightTable
from gateways.smpp.session_reader import DeliverSink, FrameProtocol, FrameReader

log = logging.getLogger("herald.smpp.session")

_BIND_COMMANDS = {"transceiver": "bind_transceiver", "transmitter": "bind_transmitter",
                  "receiver": "bind_receiver"}


class Session(FrameReader, InFlightTable):
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
        self._pending: dict[int, InFlight] = {}
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
            loop.create_connection(lambda: FrameProtocol(session), cfg.host, cfg.port),
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
