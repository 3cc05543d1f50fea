"""SMSC simulator: binds (transceiver/transmitter/receiver), submit_sm -> submit_sm_resp,
then a delivery receipt (deliver_sm, esm_class 0x04, Appendix-B text plus
receipted_message_id and message_state TLVs) after a delay; enquire_link, unbind.

Outcomes are chosen by regexes over destination_addr. A receipt is retried while no
receiver is bound; one the ESME refuses (non-zero deliver_sm_resp, e.g. ESME_RX_T_APPN) or
does not answer in time is sent again (resend_receipts, the default) or, like many real
SMSCs, never again (resend_receipts=False: counted in receipts_refused and receipts_dropped).
id_start fixes where message ids start, so a restarted simulator reissues the ids of its
previous run (an SMSC that restarts its id counter). `stats` is the ground truth the tests
compare the gateway's events with (with keep_texts, also the text each destination got).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateways.smpp import pdu, receipts, settings
from shared import smstext as encoding
from shared.metrics import split_addr

log = logging.getLogger("herald.smpp.simulator")

SIM_SYSTEM_ID = "HERALDSIM"
_BIND_RESP = {pdu.BIND_TRANSCEIVER: ("bind_transceiver_resp", "trx"),
              pdu.BIND_TRANSMITTER: ("bind_transmitter_resp", "tx"),
              pdu.BIND_RECEIVER: ("bind_receiver_resp", "rx")}
ID_STYLES = ("hex", "decimal", "mixed")
RECEIPT_MODES = ("both", "text", "tlv")
MAX_RETRY_DELAY = 5.0


def _pattern(value: str) -> re.Pattern[str] | None:
    return re.compile(value) if value else None


def _part_of(sm: pdu.ShortMessage) -> int:
    """Part number of a concatenated submit_sm (1 for a single-part message)."""
    _body, concat = encoding.strip_udh(sm.short_message, sm.esm_class)
    return 1 if concat is None else concat[2]


@dataclass
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 0
    system_id: str = ""   # empty: any
    password: str = ""    # empty: any
    receipt_delay: float = 0.5
    fail_pattern: str = ""
    fail_stat: str = "UNDELIV"
    fail_part: int = 0  # with a multipart message to a fail_pattern match, fail only this part
    throttle_part: int = 0  # with throttle_pattern: throttle the first submit of this part only
    # (regex over destination_addr, stat, delay or None): first match decides the receipt
    receipt_rules: tuple[tuple[str, str, float | None], ...] = ()
    reject_pattern: str = ""
    reject_status: int = pdu.ESME_RINVDSTADR
    throttle_pattern: str = ""
    throttle_every: int = 0      # every Nth submit_sm answered ESME_RTHROTTLED
    queue_full_every: int = 0    # every Nth submit_sm answered ESME_RMSGQFUL
    syserr_pattern: str = ""     # first syserr_times submits to a match: ESME_RSYSERR
    syserr_times: int = 1
    drop_pattern: str = ""
    id_style: str = "hex"
    receipt_mode: str = "both"   # both, text (Appendix B only), tlv (TLVs only)
    receipt_first: bool = False
    duplicate_receipts: bool = False
    disconnect_after: int = 0    # drop every connection once, on the Nth submit_sm (unanswered)
    receipt_retry_delay: float = 0.2
    receipt_max_attempts: int = 50
    resend_receipts: bool = True  # False: a refused / unanswered receipt is never sent again
    id_start: int = 0             # first message id (0: random, so runs do not collide)
    keep_texts: bool = False      # record each accepted message's text per destination
    hold_receipts: bool = False   # keep receipts until release_receipts() (in process, tests)
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
            receipt_rules=parse_rules(settings.SIM_RECEIPT_RULES.get()),
            reject_pattern=settings.SIM_REJECT_PATTERN.get(),
            reject_status=int(settings.SIM_REJECT_STATUS.get(), 0),
            throttle_pattern=settings.SIM_THROTTLE_PATTERN.get(),
            throttle_every=settings.SIM_THROTTLE_EVERY.get_int(),
            queue_full_every=settings.SIM_QUEUE_FULL_EVERY.get_int(),
            syserr_pattern=settings.SIM_SYSERR_PATTERN.get(),
            drop_pattern=settings.SIM_DROP_PATTERN.get(),
            id_style=settings.SIM_ID_STYLE.get(),
            receipt_mode=settings.SIM_RECEIPT_MODE.get(),
            receipt_first=settings.SIM_RECEIPT_FIRST.get_bool(),
            duplicate_receipts=settings.SIM_DUPLICATE_RECEIPTS.get_bool(),
            disconnect_after=settings.SIM_DISCONNECT_AFTER.get_int(),
            receipt_retry_delay=settings.SIM_RECEIPT_RETRY_DELAY.get_float(),
            receipt_max_attempts=settings.SIM_RECEIPT_MAX_ATTEMPTS.get_int(),
            resend_receipts=settings.SIM_RESEND_RECEIPTS.get_bool(),
            id_start=settings.SIM_ID_START.get_int(),
            keep_texts=settings.SIM_KEEP_TEXTS.get_bool(),
            throttle_part=settings.SIM_THROTTLE_PART.get_int(),
            stats_file=settings.SIM_STATS_FILE.get(),
        )


def parse_rules(text: str) -> tuple[tuple[str, str, float | None], ...]:
    """'900(1|2)$=UNDELIV@2.5;900999$=EXPIRED' -> ((regex, stat, delay or None), ...)."""
    out = []
    for item in filter(None, (x.strip() for x in text.split(";"))):
        pattern, _, rest = item.rpartition("=")
        stat, _, delay = rest.partition("@")
        out.append((pattern, receipts.normalise_stat(stat), float(delay) if delay else None))
    return tuple(out)


@dataclass
class SimStats:
    accepted: Counter[str] = field(default_factory=Counter)  # destination -> accepted submits
    attempts: Counter[str] = field(default_factory=Counter)  # destination -> every submit_sm
    # (destination, short_message) -> accepted submits: > 1 is a duplicate SMS
    accepted_messages: Counter[str] = field(default_factory=Counter)
    submits_total: int = 0
    submits_accepted: int = 0
    submits_rejected: int = 0
    submits_throttled: int = 0
    submits_queue_full: int = 0
    # Which destinations the every-Nth refusals hit (the order of submits varies, so tests
    # need this to know a destination's expected attempt count).
    queue_full_by_dest: Counter = field(default_factory=Counter)
    submits_syserr: int = 0
    submits_dropped: int = 0
    disconnects: int = 0          # forced with disconnect_after
    receipts_sent: int = 0        # deliver_sm written, retries included
    receipts_acked: int = 0       # receipts answered ESME_ROK (duplicates not counted)
    receipts_retried: int = 0     # non-zero deliver_sm_resp, timeout or no receiver
    receipts_refused: int = 0     # non-zero deliver_sm_resp or no answer in time
    receipts_dropped: int = 0     # given up after receipt_max_attempts
    receipts_duplicated: int = 0  # extra copies sent with duplicate_receipts
    receipts_pending: int = 0     # scheduled, not yet acked or dropped
    mo_sent: int = 0
    mo_acked: int = 0
    binds: int = 0
    unbinds: int = 0
    enquire_links: int = 0
    connections: int = 0

    duplicate_submits: int = 0    # accepted submits of a (destination, text) seen before
    # destination -> texts of the messages accepted for it, multipart reassembled (keep_texts)
    texts: dict[str, list[str]] = field(default_factory=dict)

    def accept(self, dest: str, key: str) -> None:
        self.accepted[dest] += 1
        self.submits_accepted += 1
        n = self.accepted_messages[key] = self.accepted_messages[key] + 1
        if n > 1:
            self.duplicate_submits += 1

    def as_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies accepted_messages (one entry per message),
        # which at 20 snapshots/s ate most of the simulator's CPU in long benches.
        d = {name: getattr(self, name) for name in _SCALAR_STATS}
        d["accepted"] = dict(self.accepted)
        d["attempts"] = dict(self.attempts)
        d["accepted_distinct"] = len(self.accepted_messages)
        if self.texts:
            d["texts"] = {k: list(v) for k, v in self.texts.items()}
        return d


_SCALAR_STATS = tuple(f.name for f in fields(SimStats) if f.type in ("int", int))


@dataclass(slots=True)
class _Outbound:
    """A deliver_sm (receipt or MO) the simulator keeps sending until it is acknowledged."""

    body: bytes          # deliver_sm body; the header is added per attempt
    system_id: str
    origin: _Connection | None
    done: asyncio.Future[bool] | None = None  # only when someone waits for it (MO, tests)
    receipt: bool = True
    attempts: int = 0
    delay: float = 0.0
    finished: bool = False


class _Connection(asyncio.Protocol):
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
        # seq -> (what was sent, deadline); what: an _Outbound, a future, or None (ignored)
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
        n, pos = len(buf), 0
        try:
            while n - pos >= 16:
                length = int.from_bytes(buf[pos:pos + 4], "big")
                if length < 16 or length > pdu.MAX_PDU_LENGTH:
                    raise pdu.ProtocolError(f"implausible command_length {length}")
                if n - pos < length:
                    break
                frame = pdu.Frame.parse(bytes(buf[pos:pos + length]))
                pos += length
                if frame.command_id & pdu.RESPONSE_BIT:
                    self._on_response(frame)
                elif not self._on_request(frame):
                    self.close()
                    return
        except (pdu.ProtocolError, ConnectionError):
            self.close()
            return
        finally:
            del buf[:pos]

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

    def send_body(self, command_id: int, body: bytes, what: _Outbound | None = None) -> None:
        """Send a request; its response (or timeout, or connection loss) goes to
        sim.answered(what, ok) when `what` is given. Raises ConnectionResetError."""
        self._seq = seq = pdu.next_sequence(self._seq)
        self._send(pdu.HEADER.pack(16 + len(body), command_id, 0, seq) + body, what, seq)

    def _on_response(self, frame: pdu.Frame) -> None:
        entry = self._pending.pop(frame.sequence, None)
        if entry is None:
            return
        what = entry[0]
        if isinstance(what, _Outbound):
            self.sim.answered(what, frame.status == pdu.ESME_ROK)
        elif what is not None and not what.done():
            what.set_result(frame)

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
        if isinstance(what, _Outbound):
            self.sim.answered(what, False)
        elif what is not None and not what.done():
            what.set_exception(exc)

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
        self._flush()
        self.closed = True
        self.sim.detach(self)
        pending, self._pending = self._pending, {}
        for what, _deadline in pending.values():
            self._fail(what, ConnectionResetError("connection closed"))
        if self.transport is not None:
            self.transport.close()


class SmscSimulator:
    def __init__(self, cfg: SimulatorConfig | None = None) -> None:
        self.cfg = cfg or SimulatorConfig()
        if self.cfg.receipt_mode not in RECEIPT_MODES:
            raise ValueError(f"receipt_mode must be one of {RECEIPT_MODES}")
        if self.cfg.id_style not in ID_STYLES:
            raise ValueError(f"id_style must be one of {ID_STYLES}, not {self.cfg.id_style!r}")
        self.stats = SimStats()
        self._stamp_minute = -1
        self._stamp_text = ""
        self._written: dict[str, Any] = {}
        self.port = 0
        self._fail = _pattern(self.cfg.fail_pattern)
        self._reject = _pattern(self.cfg.reject_pattern)
        self._throttle = _pattern(self.cfg.throttle_pattern)
        self._drop = _pattern(self.cfg.drop_pattern)
        self._throttled: set[str] = set()
        self._syserr = _pattern(self.cfg.syserr_pattern)
        self._syserrs: Counter[str] = Counter()
        self._rules = [(re.compile(p), stat, d) for p, stat, d in self.cfg.receipt_rules]
        # Random base: ids from different runs against one Redis must not collide.
        self._next_id = self.cfg.id_start or random.randrange(0x10000000, 0x70000000)
        # (destination, concat reference) -> part number -> text, until all parts are in
        self._partial: dict[tuple[str, int], dict[int, str]] = {}
        self._server: asyncio.Server | None = None
        self._stopped = False
        self._conns: set[_Connection] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stats_task: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        # receipts due after the same delay, collected in one loop iteration: one timer each
        self._due: dict[float, list[_Outbound]] = {}
        self._held: list[_Outbound] = []  # receipts kept back (hold_receipts)

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), self.cfg.host, self.cfg.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._sweeper = asyncio.create_task(self._sweep())
        if self.cfg.stats_file:
            self._write_stats()
            self._stats_task = asyncio.create_task(self._stats_writer())
        log.info("SMSC simulator listening", extra={"smpp_port": self.port})
        return self.port

    async def stop(self) -> None:
        self._stopped = True
        if self._server is not None:
            self._server.close()
        self.drop_connections()
        for task in [*self._tasks, *(t for t in (self._stats_task, self._sweeper) if t)]:
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

    async def _sweep(self) -> None:
        step = max(0.01, min(0.25, self.cfg.response_timeout / 4))
        while True:
            await asyncio.sleep(step)
            now = time.monotonic()
            for conn in list(self._conns):
                conn.expire(now)

    # --- submit -------------------------------------------------------------------------
    def _ids(self) -> tuple[str, str]:
        n = self._next_id
        self._next_id += 1
        hex_id, dec_id = f"{n:08X}", f"{n:010d}"
        return {"hex": (hex_id, hex_id), "decimal": (dec_id, dec_id),
                "mixed": (hex_id, dec_id)}[self.cfg.id_style]

    def _refuse(self, dest: str, sm: pdu.ShortMessage) -> int | None:
        """command_status of a submit the simulator refuses (or None to accept it)."""
        st, cfg = self.stats, self.cfg
        n = st.submits_total
        if self._reject and self._reject.search(dest):
            st.submits_rejected += 1
            return cfg.reject_status
        if cfg.throttle_every and n % cfg.throttle_every == 0:
            st.submits_throttled += 1
            return pdu.ESME_RTHROTTLED
        if cfg.queue_full_every and n % cfg.queue_full_every == 0:
            st.submits_queue_full += 1
            st.queue_full_by_dest[dest] += 1
            return pdu.ESME_RMSGQFUL
        if self._throttle and self._throttle.search(dest) and dest not in self._throttled \
                and (not cfg.throttle_part or _part_of(sm) == cfg.throttle_part):
            self._throttled.add(dest)
            st.submits_throttled += 1
            return pdu.ESME_RTHROTTLED
        if self._syserr and self._syserr.search(dest) and self._syserrs[dest] < cfg.syserr_times:
            self._syserrs[dest] += 1
            st.submits_syserr += 1
            return pdu.ESME_RSYSERR
        return None

    def on_submit(self, conn: _Connection, frame: pdu.Frame) -> None:
        sm = pdu.parse_sm(frame.raw)
        dest = sm.destination_addr
        st = self.stats
        st.submits_total += 1
        st.attempts[dest] += 1
        seq = frame.sequence
        if self.cfg.disconnect_after and st.submits_total == self.cfg.disconnect_after:
            # Never answered: the ESME cannot know whether this one was taken.
            st.disconnects += 1
            st.submits_dropped += 1
            self.drop_connections()
            return
        if self._drop and self._drop.search(dest):
            st.submits_dropped += 1
            return
        status = self._refuse(dest, sm)
        if status is not None:
            conn.write(pdu.encode_submit_sm_resp(seq, "", status))
            return
        resp_id, receipt_id = self._ids()
        st.accept(dest, f"{dest}|{sm.short_message.hex()}")
        if self.cfg.keep_texts:
            self._keep_text(dest, sm)
        resp = pdu.encode_submit_sm_resp(seq, resp_id)
        stat, delay = self._outcome(dest)
        if self.cfg.fail_part and stat == self.cfg.fail_stat:
            _text, concat = encoding.strip_udh(sm.short_message, sm.esm_class)
            if concat is not None and concat[2] != self.cfg.fail_part:
                stat = "DELIVRD"
        wanted = sm.registered_delivery & 0x03
        if not (wanted == 1 or (wanted == 2 and stat != "DELIVRD")):
            conn.write(resp)
            return
        out = _Outbound(self._receipt_body(sm, receipt_id, stat), conn.system_id, conn)
        st.receipts_pending += 1
        if self.cfg.receipt_first:
            # The receipt overtakes the response: the ESME cannot know the id yet.
            self._send_outbound(out)
            conn.write(resp)
        elif self.cfg.hold_receipts:
            conn.write(resp)
            self._held.append(out)
        else:
            conn.write(resp)
            self._later(delay, out)

    def add_receipt_rule(self, pattern: str, stat: str, delay: float | None = None) -> None:
        """Receipts to destinations matching `pattern` say `stat` (after `delay`, default the
        receipt delay); rules added later are consulted after the configured ones."""
        self._rules.append((re.compile(pattern), stat, delay))

    def release_receipts(self) -> int:
        """hold_receipts: send the receipts kept back so far (e.g. after the ESME's state
        was lost); how many."""
        held, self._held = self._held, []
        for out in held:
            self._send_outbound(out)
        return len(held)

    def _keep_text(self, dest: str, sm: pdu.ShortMessage) -> None:
        body, concat = encoding.strip_udh(sm.short_message, sm.esm_class)
        text = encoding.decode(body, sm.data_coding)
        if concat is None:
            self.stats.texts.setdefault(dest, []).append(text)
            return
        ref, total, seq = concat
        parts = self._partial.setdefault((dest, ref), {})
        parts[seq] = text
        if len(parts) >= total:
            del self._partial[(dest, ref)]
            self.stats.texts.setdefault(dest, []).append("".join(parts[i] for i in sorted(parts)))

    def _later(self, delay: float, out: _Outbound) -> None:
        batch = self._due.get(delay)
        if batch is None:
            loop = asyncio.get_running_loop()
            if not self._due:
                loop.call_soon(self._due.clear)  # later iterations start new batches
            self._due[delay] = batch = []
            loop.call_later(delay, self._send_batch, batch)
        batch.append(out)

    def _send_batch(self, batch: list[_Outbound]) -> None:
        for out in batch:
            self._send_outbound(out)

    def _outcome(self, dest: str) -> tuple[str, float]:
        for rx, stat, delay in self._rules:
            if rx.search(dest):
                return stat, self.cfg.receipt_delay if delay is None else delay
        if self._fail and self._fail.search(dest):
            return self.cfg.fail_stat, self.cfg.receipt_delay
        return "DELIVRD", self.cfg.receipt_delay

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

    # --- receipts and MO: sent until acknowledged -----------------------------------------
    def _receiver(self, system_id: str, prefer: _Connection | None) -> _Connection | None:
        if prefer is not None and prefer.can_receive:
            return prefer
        for conn in self._conns:
            if conn.can_receive and (not system_id or conn.system_id == system_id):
                return conn
        return None

    def _send_outbound(self, out: _Outbound) -> None:
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

    def attach(self, conn: _Connection) -> None:
        """A connection opened (closed: detach): it is counted, bound or not."""
        self._conns.add(conn)

    def detach(self, conn: _Connection) -> None:
        self._conns.discard(conn)

    def answered(self, out: _Outbound, ok: bool) -> None:
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

    def _retry_outbound(self, out: _Outbound) -> None:
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

    def _outbound_done(self, out: _Outbound, ok: bool) -> None:
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
        out = _Outbound(raw[16:], system_id, None, done, receipt=False)
        self._send_outbound(out)
        return done

    def inject_receipt(self, message_id: str, stat: str, source_addr: str,
                       destination_addr: str = "HERALD", system_id: str = "") -> asyncio.Future[bool]:
        """Send a receipt of the simulator's making (any id, any handset) like the SMSC's own
        (retried or not per resend_receipts); the future says whether it was acknowledged."""
        raw = pdu.encode_submit_sm(0, source_addr=destination_addr, destination_addr=source_addr,
                                   short_message=b"", registered_delivery=1)
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        out = _Outbound(self._receipt_body(pdu.parse_sm(raw), message_id, receipts.normalise_stat(stat)),
                        system_id, None, done)
        self.stats.receipts_pending += 1
        self._send_outbound(out)
        return done

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
