"""SMSC simulator: binds (transceiver/transmitter/receiver), submit_sm -> submit_sm_resp,
then a delivery receipt (deliver_sm, esm_class 0x04, Appendix-B text plus
receipted_message_id and message_state TLVs) after a delay; enquire_link, unbind.

Outcomes are chosen by regexes over destination_addr; every receipt is retried while the
ESME answers a non-zero deliver_sm_resp (e.g. ESME_RX_T_APPN), times out, or no receiver is
bound. `stats` is the ground truth the tests compare the gateway's events with.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateways.smpp import encoding, pdu, receipts, settings
from shared.metrics import split_addr

log = logging.getLogger("herald.smpp.simulator")

SIM_SYSTEM_ID = "HERALDSIM"
_BIND_RESP = {pdu.BIND_TRANSCEIVER: ("bind_transceiver_resp", "trx"),
              pdu.BIND_TRANSMITTER: ("bind_transmitter_resp", "tx"),
              pdu.BIND_RECEIVER: ("bind_receiver_resp", "rx")}
ID_STYLES = ("hex", "decimal", "mixed")
MAX_RETRY_DELAY = 5.0


def _pattern(value: str) -> re.Pattern[str] | None:
    return re.compile(value) if value else None


@dataclass
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 0
    system_id: str = ""   # empty: any
    password: str = ""    # empty: any
    receipt_delay: float = 0.5
    fail_pattern: str = ""
    fail_stat: str = "UNDELIV"
    reject_pattern: str = ""
    reject_status: int = pdu.ESME_RINVDSTADR
    throttle_pattern: str = ""
    drop_pattern: str = ""
    id_style: str = "hex"
    receipt_first: bool = False
    duplicate_receipts: bool = False
    receipt_retry_delay: float = 0.2
    receipt_max_attempts: int = 50
    response_timeout: float = 5.0
    stats_file: str = ""

    @classmethod
    def from_env(cls) -> SimulatorConfig:
        host, port = split_addr(settings.SIM_ADDR.get())
        return cls(
            host=host, port=port,
            system_id=settings.SIM_SYSTEM_ID.get(),
            password=settings.SIM_PASSWORD.get(),
            receipt_delay=settings.SIM_RECEIPT_DELAY.get_float(),
            fail_pattern=settings.SIM_FAIL_PATTERN.get(),
            fail_stat=receipts.normalise_stat(settings.SIM_FAIL_STAT.get()),
            reject_pattern=settings.SIM_REJECT_PATTERN.get(),
            reject_status=int(settings.SIM_REJECT_STATUS.get(), 0),
            throttle_pattern=settings.SIM_THROTTLE_PATTERN.get(),
            drop_pattern=settings.SIM_DROP_PATTERN.get(),
            id_style=settings.SIM_ID_STYLE.get(),
            receipt_first=settings.SIM_RECEIPT_FIRST.get_bool(),
            duplicate_receipts=settings.SIM_DUPLICATE_RECEIPTS.get_bool(),
            receipt_retry_delay=settings.SIM_RECEIPT_RETRY_DELAY.get_float(),
            receipt_max_attempts=settings.SIM_RECEIPT_MAX_ATTEMPTS.get_int(),
            stats_file=settings.SIM_STATS_FILE.get(),
        )


@dataclass
class SimStats:
    accepted: Counter[str] = field(default_factory=Counter)  # destination -> accepted submits
    attempts: Counter[str] = field(default_factory=Counter)  # destination -> every submit_sm
    submits_total: int = 0
    submits_accepted: int = 0
    submits_rejected: int = 0
    submits_throttled: int = 0
    submits_dropped: int = 0
    receipts_sent: int = 0        # deliver_sm written, retries included
    receipts_acked: int = 0       # receipts answered ESME_ROK (duplicates not counted)
    receipts_retried: int = 0     # non-zero deliver_sm_resp, timeout or no receiver
    receipts_dropped: int = 0     # given up after receipt_max_attempts
    receipts_duplicated: int = 0  # extra copies sent with duplicate_receipts
    receipts_pending: int = 0     # scheduled, not yet acked or dropped
    binds: int = 0
    unbinds: int = 0
    enquire_links: int = 0
    connections: int = 0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["accepted"] = dict(self.accepted)
        d["attempts"] = dict(self.attempts)
        return d


class _Connection:
    """The SMSC side of one ESME connection."""

    def __init__(self, sim: SmscSimulator, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.sim = sim
        self.reader = reader
        self.writer = writer
        self.mode = ""  # tx, rx, trx once bound
        self.system_id = ""
        self._seq = 0
        self._pending: dict[int, asyncio.Future[pdu.Frame]] = {}
        self.closed = False

    @property
    def can_receive(self) -> bool:
        return not self.closed and self.mode in ("rx", "trx")

    def write(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionResetError("connection closed")
        self.writer.write(data)

    def send_request(self, command: str, **fields: Any) -> asyncio.Future[pdu.Frame]:
        self._seq = seq = pdu.next_sequence(self._seq)
        fut: asyncio.Future[pdu.Frame] = asyncio.get_running_loop().create_future()
        self._pending[seq] = fut
        try:
            self.write(pdu.encode(command, seq, **fields))
        except ConnectionError as exc:
            self._pending.pop(seq, None)
            fut.set_exception(exc)
        fut.add_done_callback(lambda _f: self._pending.pop(seq, None))
        return fut

    async def serve(self) -> None:
        try:
            while True:
                frame = await pdu.read_frame(self.reader)
                if frame.is_response:
                    fut = self._pending.get(frame.sequence)
                    if fut is not None and not fut.done():
                        fut.set_result(frame)
                    continue
                if not self._on_request(frame):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, OSError, pdu.ProtocolError):
            pass
        finally:
            self.close()

    def _on_request(self, frame: pdu.Frame) -> bool:
        """Handle one request; False ends the connection."""
        cid, seq = frame.command_id, frame.sequence
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
            return False
        elif cid == pdu.SUBMIT_SM:
            if self.mode not in ("tx", "trx"):
                self.write(pdu.encode("submit_sm_resp", seq, status=pdu.ESME_RINVBNDSTS))
            else:
                self.sim.on_submit(self, frame)
        elif cid != pdu.GENERIC_NACK:
            self.write(pdu.header_only(pdu.GENERIC_NACK, seq, pdu.ESME_RINVCMDID))
        return True

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
        self.closed = True
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionResetError("connection closed"))
        self.writer.close()


class SmscSimulator:
    def __init__(self, cfg: SimulatorConfig | None = None) -> None:
        self.cfg = cfg or SimulatorConfig()
        if self.cfg.id_style not in ID_STYLES:
            raise ValueError(f"id_style must be one of {ID_STYLES}, not {self.cfg.id_style!r}")
        self.stats = SimStats()
        self._written: dict[str, Any] = {}
        self.port = 0
        self._fail = _pattern(self.cfg.fail_pattern)
        self._reject = _pattern(self.cfg.reject_pattern)
        self._throttle = _pattern(self.cfg.throttle_pattern)
        self._drop = _pattern(self.cfg.drop_pattern)
        self._throttled: set[str] = set()
        # Random base: ids from different runs against one Redis must not collide.
        self._next_id = random.randrange(0x10000000, 0x70000000)
        self._server: asyncio.Server | None = None
        self._conns: set[_Connection] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stats_task: asyncio.Task[None] | None = None

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, self.cfg.host, self.cfg.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        if self.cfg.stats_file:
            self._write_stats()
            self._stats_task = asyncio.create_task(self._stats_writer())
        log.info("SMSC simulator listening", extra={"smpp_port": self.port})
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.drop_connections()
        for task in [*self._tasks, *([self._stats_task] if self._stats_task else [])]:
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()
        if self.cfg.stats_file:
            self._write_stats()

    def drop_connections(self) -> None:
        """Close every ESME connection abruptly (no unbind), as a crashing SMSC would."""
        for conn in list(self._conns):
            conn.close()

    @property
    def bound_connections(self) -> int:
        return sum(1 for c in self._conns if c.mode and not c.closed)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(self, reader, writer)
        self._conns.add(conn)
        self.stats.connections += 1
        try:
            await conn.serve()
        finally:
            self._conns.discard(conn)

    # --- submit -------------------------------------------------------------------------
    def _ids(self) -> tuple[str, str]:
        n = self._next_id
        self._next_id += 1
        hex_id, dec_id = f"{n:08X}", f"{n:010d}"
        return {"hex": (hex_id, hex_id), "decimal": (dec_id, dec_id),
                "mixed": (hex_id, dec_id)}[self.cfg.id_style]

    def on_submit(self, conn: _Connection, frame: pdu.Frame) -> None:
        body = frame.body
        dest = frame.text_field("destination_addr")
        st = self.stats
        st.submits_total += 1
        st.attempts[dest] += 1
        seq = frame.sequence
        if self._drop and self._drop.search(dest):
            st.submits_dropped += 1
            return
        if self._reject and self._reject.search(dest):
            st.submits_rejected += 1
            conn.write(pdu.encode("submit_sm_resp", seq, status=self.cfg.reject_status))
            return
        if self._throttle and self._throttle.search(dest) and dest not in self._throttled:
            self._throttled.add(dest)
            st.submits_throttled += 1
            conn.write(pdu.encode("submit_sm_resp", seq, status=pdu.ESME_RTHROTTLED))
            return
        resp_id, receipt_id = self._ids()
        st.accepted[dest] += 1
        st.submits_accepted += 1
        resp = pdu.encode("submit_sm_resp", seq, message_id=resp_id)
        stat = self.cfg.fail_stat if self._fail and self._fail.search(dest) else "DELIVRD"
        wanted = int(body.registered_delivery or 0) & 0x03
        if not (wanted == 1 or (wanted == 2 and stat != "DELIVRD")):
            conn.write(resp)
            return
        fields = self._receipt_fields(frame, receipt_id, stat)
        st.receipts_pending += 1
        if self.cfg.receipt_first:
            # The receipt overtakes the response: the ESME cannot know the id yet.
            first = conn.send_request("deliver_sm", **fields)
            st.receipts_sent += 1
            conn.write(resp)
            self._spawn(self._deliver_receipt(conn, fields, first))
        else:
            conn.write(resp)
            self._spawn(self._deliver_receipt(conn, fields, None))

    def _receipt_fields(self, frame: pdu.Frame, receipt_id: str, stat: str) -> dict[str, Any]:
        body = frame.body
        short = bytes(body.short_message or b"")
        if int(body.esm_class or 0) & pdu.ESM_UDHI and short:
            short = short[short[0] + 1:]
        excerpt = encoding.decode(short, int(body.data_coding or 0))
        excerpt = excerpt.encode("ascii", "replace").decode()[:20]
        now = datetime.now(UTC)
        text = receipts.format_text(receipt_id, stat, "000" if stat == "DELIVRD" else "001",
                                    now, now, excerpt)
        return dict(
            service_type="",
            source_addr_ton=int(body.dest_addr_ton or 0), source_addr_npi=int(body.dest_addr_npi or 0),
            source_addr=frame.text_field("destination_addr"),
            dest_addr_ton=int(body.source_addr_ton or 0), dest_addr_npi=int(body.source_addr_npi or 0),
            destination_addr=frame.text_field("source_addr"),
            esm_class=pdu.ESM_SMSC_RECEIPT, protocol_id=0, priority_flag=0,
            schedule_delivery_time="", validity_period="", registered_delivery=0,
            replace_if_present_flag=0, data_coding=0, sm_default_msg_id=0,
            short_message=text.encode("ascii"),
            receipted_message_id=receipt_id,
            message_state=receipts.STAT_TO_STATE.get(stat, 7),
        )

    # --- receipts -----------------------------------------------------------------------
    def _receiver(self, system_id: str, prefer: _Connection) -> _Connection | None:
        if prefer.can_receive:
            return prefer
        for conn in self._conns:
            if conn.can_receive and conn.system_id == system_id:
                return conn
        return None

    async def _send_until_acked(self, origin: _Connection, fields: dict[str, Any],
                                first: asyncio.Future[pdu.Frame] | None) -> bool:
        st = self.stats
        fut = first
        delay = self.cfg.receipt_retry_delay
        for _attempt in range(self.cfg.receipt_max_attempts):
            if fut is None:
                conn = self._receiver(origin.system_id, origin)
                if conn is not None:
                    fut = conn.send_request("deliver_sm", **fields)
                    st.receipts_sent += 1
            status = None
            if fut is not None:
                try:
                    status = (await asyncio.wait_for(fut, self.cfg.response_timeout)).status
                except (TimeoutError, ConnectionError):
                    status = None
                fut = None
            if status == pdu.ESME_ROK:
                return True
            st.receipts_retried += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_DELAY)
        return False

    async def _deliver_receipt(self, origin: _Connection, fields: dict[str, Any],
                               first: asyncio.Future[pdu.Frame] | None) -> None:
        st = self.stats
        if first is None:
            await asyncio.sleep(self.cfg.receipt_delay)
        try:
            ok = await self._send_until_acked(origin, fields, first)
        finally:
            st.receipts_pending -= 1
        if not ok:
            st.receipts_dropped += 1
            log.warning("receipt dropped after %d attempts", self.cfg.receipt_max_attempts,
                        extra={"smsc_id": fields["receipted_message_id"]})
            return
        st.receipts_acked += 1
        if self.cfg.duplicate_receipts:
            conn = self._receiver(origin.system_id, origin)
            if conn is not None:
                st.receipts_duplicated += 1
                with contextlib.suppress(TimeoutError, ConnectionError):
                    await asyncio.wait_for(conn.send_request("deliver_sm", **fields),
                                           self.cfg.response_timeout)

    # --- stats file ---------------------------------------------------------------------
    def _write_stats(self) -> None:
        snapshot = {"smpp_port": self.port, **self.stats.as_dict()}
        if snapshot == self._written:
            return
        path = Path(self.cfg.stats_file)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(snapshot))
        os.replace(tmp, path)  # readers never see a half-written file
        self._written = snapshot

    async def _stats_writer(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            self._write_stats()
