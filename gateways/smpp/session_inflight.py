"""A session's requests in flight: the next sequence number, who waits for each response
(a callback, or a future for the awaitable API), and one sweeper that fails the late ones
with ResponseTimeout instead of a timer per PDU."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from gateways.smpp import pdu
from gateways.smpp.session_config import ClientConfig
from gateways.smpp.session_errors import NotBound, ResponseTimeout

# What waits for a response: callback(arg, Frame | SmppError), its argument, its deadline.
InFlight = tuple[Callable[[Any, Any], None], Any, float]


class InFlightTable:
    """Session's request side. The reader pops an entry when its response arrives;
    Session.mark_closed fails what is left with ConnectionLost."""

    cfg: ClientConfig
    closed: asyncio.Event
    close_reason: str
    writable: asyncio.Event
    _seq: int
    _pending: dict[int, InFlight]  # seq -> what waits for its response
    _write: Callable[[bytes], None]

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
        self.send_cb(build, resolve_future, fut, timeout)
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


def resolve_future(fut: asyncio.Future[pdu.Frame], result: Any) -> None:
    """A request's result (frame or error) into the future waiting for it."""
    if fut.done():
        return
    if isinstance(result, BaseException):
        fut.set_exception(result)
    else:
        fut.set_result(result)
