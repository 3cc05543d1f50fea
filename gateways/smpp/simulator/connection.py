"""The SMSC side of one ESME connection: binds, enquire_link, unbind, submit_sm handed to
the simulator, and the deliver_sm it sends waiting for their deliver_sm_resp."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from gateways.smpp import pdu
from gateways.smpp.simulator.outbound import Outbound

if TYPE_CHECKING:
    from gateways.smpp.simulator.server import SmscSimulator

SIM_SYSTEM_ID = "HERALDSIM"
_BIND_RESP = {pdu.BIND_TRANSCEIVER: ("bind_transceiver_resp", "trx"),
              pdu.BIND_TRANSMITTER: ("bind_transmitter_resp", "tx"),
              pdu.BIND_RECEIVER: ("bind_receiver_resp", "rx")}


class EsmeConnection(asyncio.Protocol):
    """The SMSC side of one ESME connection. Framed straight out of the receive buffer;
    everything written in one loop iteration goes out in one transport.write. Outbound
    deliver_sm wait in `_pending` (insertion order = deadline order, so the sweeper stops
    at the first one still in time) instead of a future and a timer each."""

    def __init__(self, sim: SmscSimulator) -> None:
        self.sim = sim
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.mode = ""  # tx, rx, trx once bound
        self.system_id = ""
        self._seq = 0
        # seq -> (what was sent, deadline); what: an Outbound, a future, or None (ignored)
        self._pending: dict[int, tuple[Any, float]] = {}
        self._out: list[bytes] = []
        self.closed = False

    # --- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.sim.attach(self)
        self.sim.stats.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        try:
            pdu.split_frames(buf, self._on_frame)
        except (pdu.ProtocolError, ConnectionError):
            self.close()

    # --- writing ----------------------------------------------------------------------------
    @property
    def can_receive(self) -> bool:
        return not self.closed and self.mode in ("rx", "trx")

    def write(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionResetError("connection closed")
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(data)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if out and not self.closed and self.transport is not None:
            self.transport.write(b"".join(out))

    def _send(self, data: bytes, what: Any, seq: int) -> None:
        self._pending[seq] = (what, time.monotonic() + self.sim.cfg.response_timeout)
        self.write(data)

    def send_request(self, command: str, **fields: Any) -> asyncio.Future[pdu.Frame]:
        self._seq = seq = pdu.next_sequence(self._seq)
        fut: asyncio.Future[pdu.Frame] = asyncio.get_running_loop().create_future()
        try:
            self._send(pdu.encode(command, seq, **fields), fut, seq)
        except ConnectionError as exc:
            self._pending.pop(seq, None)
            fut.set_exception(exc)
        return fut

    def send_body(self, command_id: int, body: bytes, what: Outbound | None = None) -> None:
        """Send a request; its response (or timeout, or connection loss) goes to
        sim.answered(what, ok) when `what` is given. Raises ConnectionResetError."""
        self._seq = seq = pdu.next_sequence(self._seq)
        self._send(pdu.HEADER.pack(16 + len(body), command_id, 0, seq) + body, what, seq)

    # --- reading ----------------------------------------------------------------------------
    def _on_frame(self, raw: bytes) -> bool:
        """Handle one PDU; True when the connection ends with it."""
        frame = pdu.Frame.parse(raw)
        cid, seq = frame.command_id, frame.sequence
        if cid & pdu.RESPONSE_BIT:
            entry = self._pending.pop(seq, None)
            if entry is None:
                return False
            what = entry[0]
            if isinstance(what, Outbound):
                self.sim.answered(what, frame.status == pdu.ESME_ROK)
            elif what is not None and not what.done():
                what.set_result(frame)
            return False
        if cid in _BIND_RESP:
            resp_name, mode = _BIND_RESP[cid]
            status = self._check_bind(frame)
            if status == pdu.ESME_ROK:
                self.mode = mode
                self.system_id = frame.text_field("system_id")
                self.sim.stats.binds += 1
            self.write(pdu.encode(resp_name, seq, status=status, system_id=SIM_SYSTEM_ID))
        elif cid == pdu.ENQUIRE_LINK:
            self.sim.stats.enquire_links += 1
            self.write(pdu.header_only(pdu.ENQUIRE_LINK_RESP, seq))
        elif cid == pdu.UNBIND:
            self.sim.stats.unbinds += 1
            self.write(pdu.header_only(pdu.UNBIND_RESP, seq))
            self.close()
            return True
        elif cid == pdu.SUBMIT_SM:
            if self.mode not in ("tx", "trx"):
                self.write(pdu.encode("submit_sm_resp", seq, status=pdu.ESME_RINVBNDSTS))
            else:
                self.sim.on_submit(self, frame)
        elif cid != pdu.GENERIC_NACK:
            self.write(pdu.header_only(pdu.GENERIC_NACK, seq, pdu.ESME_RINVCMDID))
        return False

    def expire(self, now: float) -> None:
        """Requests whose response is overdue count as refused."""
        pending = self._pending
        late = []
        for seq, (_what, deadline) in pending.items():
            if deadline > now:
                break
            late.append(seq)
        for seq in late:
            self._fail(pending.pop(seq)[0], TimeoutError())

    def _fail(self, what: Any, exc: Exception) -> None:
        if isinstance(what, Outbound):
            self.sim.answered(what, False)
        elif what is not None and not what.done():
            what.set_exception(exc)

    def _check_bind(self, frame: pdu.Frame) -> int:
        cfg = self.sim.cfg
        if self.mode:
            return pdu.ESME_RALYBND
        if cfg.system_id and frame.text_field("system_id") != cfg.system_id:
            return pdu.ESME_RINVSYSID
        if cfg.password and frame.text_field("password") != cfg.password:
            return pdu.ESME_RINVPASWD
        return pdu.ESME_ROK

    def close(self) -> None:
        if self.closed:
            return
        self._flush()
        self.closed = True
        self.sim.detach(self)
        pending, self._pending = self._pending, {}
        for what, _deadline in pending.values():
            self._fail(what, ConnectionResetError("connection closed"))
        if self.transport is not None:
            self.transport.close()
