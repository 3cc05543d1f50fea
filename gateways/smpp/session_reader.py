"""A session's read side: PDUs framed out of the receive buffer, each response handed to
whoever waits for its sequence number, deliver_sm to the sink with a `reply(status)` that
writes its deliver_sm_resp, and the SMSC's own enquire_link and unbind answered."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from gateways.smpp import pdu
from gateways.smpp.session_errors import NotBound
from gateways.smpp.session_inflight import InFlight

if TYPE_CHECKING:
    from gateways.smpp.session_link import Session

log = logging.getLogger("herald.smpp.session")

Reply = Callable[[int], None]
DeliverSink = Callable[[pdu.Frame, Reply], None]
DeliverHandler = Callable[[pdu.Frame], Awaitable[int]]


class FrameProtocol(asyncio.Protocol):
    """The transport's protocol: frames go to `session.on_frame` with no await per PDU."""

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
        try:
            pdu.split_frames(buf, self.session.on_frame)
        except pdu.ProtocolError as exc:
            log.error("closing on protocol error: %s", exc)
            self.session.mark_closed(f"protocol error: {exc}")


class FrameReader:
    """Session's dispatch of what the SMSC sends."""

    on_deliver: DeliverSink
    _pending: dict[int, InFlight]
    _replies_pending: int  # deliver_sm whose sink has not replied yet
    _write: Callable[[bytes], None]
    mark_closed: Callable[[str], None]

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
