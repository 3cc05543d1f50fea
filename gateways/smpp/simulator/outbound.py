"""Receipts and MO the simulator sends: scheduled after their delay (one timer per delay
and loop iteration), sent to a bound receiver, and resent with backoff until acknowledged,
or given up (resend_receipts=False, receipt_max_attempts)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from gateways.smpp import pdu, receipts
from gateways.smpp.simulator.config import SimulatorConfig
from gateways.smpp.simulator.stats import SimStats
from shared import smstext as encoding

if TYPE_CHECKING:
    from gateways.smpp.simulator.connection import EsmeConnection

log = logging.getLogger("herald.smpp.simulator")

MAX_RETRY_DELAY = 5.0


@dataclass(slots=True)
class Outbound:
    """A deliver_sm (receipt or MO) the simulator keeps sending until it is acknowledged."""

    body: bytes          # deliver_sm body; the header is added per attempt
    system_id: str
    origin: EsmeConnection | None
    done: asyncio.Future[bool] | None = None  # only when someone waits for it (MO, tests)
    receipt: bool = True
    attempts: int = 0
    delay: float = 0.0
    finished: bool = False


class ReceiptSender:
    """SmscSimulator's outbound side (SmscSimulator.__init__ sets the attributes below)."""

    cfg: SimulatorConfig
    stats: SimStats
    _conns: set[EsmeConnection]
    _stopped: bool
    _due: dict[float, list[Outbound]]
    _held: list[Outbound]
    _stamp_minute: int
    _stamp_text: str

    def release_receipts(self) -> int:
        """hold_receipts: send the receipts kept back so far (e.g. after the ESME's state
        was lost); how many."""
        held, self._held = self._held, []
        for out in held:
            self._send_outbound(out)
        return len(held)

    def _later(self, delay: float, out: Outbound) -> None:
        batch = self._due.get(delay)
        if batch is None:
            loop = asyncio.get_running_loop()
            if not self._due:
                loop.call_soon(self._due.clear)  # later iterations start new batches
            self._due[delay] = batch = []
            loop.call_later(delay, self._send_batch, batch)
        batch.append(out)

    def _send_batch(self, batch: list[Outbound]) -> None:
        for out in batch:
            self._send_outbound(out)

    def _stamp(self) -> str:
        """Now as YYMMDDhhmm, formatted once a minute (strftime was ~15 % of the simulator)."""
        minute = int(time.time() // 60)
        if minute != self._stamp_minute:
            self._stamp_minute = minute
            self._stamp_text = f"{datetime.fromtimestamp(minute * 60, UTC):%y%m%d%H%M}"
        return self._stamp_text

    def _receipt_body(self, sm: pdu.ShortMessage, receipt_id: str, stat: str) -> bytes:
        short, _concat = encoding.strip_udh(sm.short_message, sm.esm_class)
        excerpt = encoding.decode(short, sm.data_coding)
        excerpt = excerpt.encode("ascii", "replace").decode()[:20]
        err = "000" if stat == "DELIVRD" else "001"
        mode = self.cfg.receipt_mode
        stamp = self._stamp()
        text = b"" if mode == "tlv" else receipts.format_text(receipt_id, stat, err, stamp, stamp, excerpt).encode()
        tlvs = b""
        if mode != "text":
            tlvs = (pdu.encode_tlv(pdu.TAG_RECEIPTED_MESSAGE_ID, receipt_id.encode() + b"\0")
                    + pdu.encode_tlv(pdu.TAG_MESSAGE_STATE, bytes((receipts.STAT_TO_STATE.get(stat, 7),))))
            if stat != "DELIVRD":
                tlvs += pdu.encode_tlv(pdu.TAG_NETWORK_ERROR_CODE, b"\x03\x00\x01")
        raw = pdu.encode_submit_sm(
            0, command_id=pdu.DELIVER_SM,
            source_addr=sm.destination_addr, source_addr_ton=sm.dest_addr_ton,
            source_addr_npi=sm.dest_addr_npi,
            destination_addr=sm.source_addr, dest_addr_ton=sm.source_addr_ton,
            dest_addr_npi=sm.source_addr_npi,
            esm_class=pdu.ESM_SMSC_RECEIPT, short_message=text, tlvs=tlvs)
        return raw[16:]

    # --- sent until acknowledged ------------------------------------------------------------
    def _receiver(self, system_id: str, prefer: EsmeConnection | None) -> EsmeConnection | None:
        if prefer is not None and prefer.can_receive:
            return prefer
        for conn in self._conns:
            if conn.can_receive and (not system_id or conn.system_id == system_id):
                return conn
        return None

    def _send_outbound(self, out: Outbound) -> None:
        if out.finished or self._stopped:
            return
        conn = self._receiver(out.system_id, out.origin)
        if conn is None:
            self._retry_outbound(out)
            return
        out.attempts += 1
        try:
            conn.send_body(pdu.DELIVER_SM, out.body, out)
        except ConnectionError:
            self._retry_outbound(out)
            return
        if out.receipt:
            self.stats.receipts_sent += 1
        else:
            self.stats.mo_sent += 1

    def answered(self, out: Outbound, ok: bool) -> None:
        """The ESME's answer to a receipt or MO (ok False: refused or not answered in time)."""
        if ok:
            self._outbound_done(out, True)
        elif out.receipt and not self.cfg.resend_receipts:
            self.stats.receipts_refused += 1
            self._outbound_done(out, False)  # like many SMSCs: a refused receipt is gone
        else:
            if out.receipt:
                self.stats.receipts_refused += 1
            self._retry_outbound(out)

    def _retry_outbound(self, out: Outbound) -> None:
        if out.finished or self._stopped:
            return
        if out.receipt:
            self.stats.receipts_retried += 1
        if out.attempts >= self.cfg.receipt_max_attempts:
            self._outbound_done(out, False)
            return
        out.delay = min(out.delay * 2, MAX_RETRY_DELAY) if out.delay else self.cfg.receipt_retry_delay
        out.attempts += 0 if out.attempts else 1  # never-sent receipts also give up eventually
        asyncio.get_running_loop().call_later(out.delay, self._send_outbound, out)

    def _outbound_done(self, out: Outbound, ok: bool) -> None:
        if out.finished:
            return
        out.finished = True
        if out.done is not None and not out.done.done():
            out.done.set_result(ok)
        st = self.stats
        if not out.receipt:
            st.mo_acked += ok
            return
        st.receipts_pending -= 1
        if not ok:
            st.receipts_dropped += 1
            log.warning("receipt dropped after %d attempts", out.attempts)
            return
        st.receipts_acked += 1
        if self.cfg.duplicate_receipts:
            conn = self._receiver(out.system_id, out.origin)
            if conn is not None:
                st.receipts_duplicated += 1
                with contextlib.suppress(ConnectionError):
                    conn.send_body(pdu.DELIVER_SM, out.body)

    def inject_mo(self, source_addr: str, destination_addr: str, text: str,
                  system_id: str = "") -> asyncio.Future[bool]:
        """Send a mobile-originated message (a reply) to a bound receiver until it is
        acknowledged; the future says whether it was."""
        enc = encoding.encode_text(text, max_parts=1)
        raw = pdu.encode_submit_sm(
            0, command_id=pdu.DELIVER_SM, source_addr=source_addr, source_addr_ton=1,
            source_addr_npi=1, destination_addr=destination_addr,
            dest_addr_ton=1 if destination_addr.isdigit() else 5,
            data_coding=enc.data_coding, short_message=enc.parts[0])
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        out = Outbound(raw[16:], system_id, None, done, receipt=False)
        self._send_outbound(out)
        return done

    def inject_receipt(self, message_id: str, stat: str, source_addr: str,
                       destination_addr: str = "HERALD", system_id: str = "") -> asyncio.Future[bool]:
        """Send a receipt of the simulator's making (any id, any handset) like the SMSC's own
        (retried or not per resend_receipts); the future says whether it was acknowledged."""
        raw = pdu.encode_submit_sm(0, source_addr=destination_addr, destination_addr=source_addr,
                                   short_message=b"", registered_delivery=1)
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        out = Outbound(self._receipt_body(pdu.parse_sm(raw), message_id, receipts.normalise_stat(stat)),
                       system_id, None, done)
        self.stats.receipts_pending += 1
        self._send_outbound(out)
        return done
