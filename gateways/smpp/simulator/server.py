"""SMSC simulator: binds (transceiver/transmitter/receiver), submit_sm -> submit_sm_resp,
then a delivery receipt (deliver_sm, esm_class 0x04, Appendix-B text plus
receipted_message_id and message_state TLVs) after a delay; enquire_link, unbind.

Outcomes are chosen by regexes over destination_addr (faults.py). A receipt is retried
while no receiver is bound; one the ESME refuses (non-zero deliver_sm_resp, e.g.
ESME_RX_T_APPN) or does not answer in time is sent again (resend_receipts, the default) or,
like many real SMSCs, never again (resend_receipts=False: counted in receipts_refused and
receipts_dropped) (outbound.py). id_start fixes where message ids start, so a restarted
simulator reissues the ids of its previous run (an SMSC that restarts its id counter).
`stats` is the ground truth the tests compare the gateway's events with (with keep_texts,
also the text each destination got; stats.py). Each ESME connection: connection.py.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from gateways.smpp import pdu
from gateways.smpp.simulator.config import ID_STYLES, RECEIPT_MODES, SimulatorConfig, parse_rules
from gateways.smpp.simulator.connection import SIM_SYSTEM_ID, EsmeConnection
from gateways.smpp.simulator.faults import FaultRules
from gateways.smpp.simulator.outbound import MAX_RETRY_DELAY, Outbound, ReceiptSender
from gateways.smpp.simulator.stats import DetailPacer, SimStats, StatsFile
from shared import smstext as encoding

log = logging.getLogger("herald.smpp.simulator")

_Outbound = Outbound  # the name tests import

__all__ = ["ID_STYLES", "MAX_RETRY_DELAY", "RECEIPT_MODES", "SIM_SYSTEM_ID", "EsmeConnection",
           "Outbound", "SimStats", "SimulatorConfig", "SmscSimulator", "_Outbound", "encoding",
           "parse_rules"]


class SmscSimulator(ReceiptSender):
    def __init__(self, cfg: SimulatorConfig | None = None) -> None:
        self.cfg = cfg or SimulatorConfig()
        if self.cfg.receipt_mode not in RECEIPT_MODES:
            raise ValueError(f"receipt_mode must be one of {RECEIPT_MODES}")
        if self.cfg.id_style not in ID_STYLES:
            raise ValueError(f"id_style must be one of {ID_STYLES}, not {self.cfg.id_style!r}")
        self.stats = SimStats()
        self._detail = DetailPacer(self.stats)
        self.faults = FaultRules(self.cfg, self.stats)
        self._stamp_minute = -1
        self._stamp_text = ""
        self._stats_file = StatsFile(self.cfg.stats_file) if self.cfg.stats_file else None
        self.port = 0
        # Random base: ids from different runs against one Redis must not collide.
        self._next_id = self.cfg.id_start or random.randrange(0x10000000, 0x70000000)
        # (destination, concat reference) -> part number -> text, until all parts are in
        self._partial: dict[tuple[str, int], dict[int, str]] = {}
        self._server: asyncio.Server | None = None
        self._stopped = False
        self._conns: set[EsmeConnection] = set()
        self._stats_task: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        # receipts due after the same delay, collected in one loop iteration: one timer each
        self._due: dict[float, list[Outbound]] = {}
        self._held: list[Outbound] = []  # receipts kept back (hold_receipts)

    # --- lifecycle ----------------------------------------------------------------------
    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: EsmeConnection(self), self.cfg.host, self.cfg.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._sweeper = asyncio.create_task(self._sweep())
        if self._stats_file is not None:
            self._stats_file.write(*self._snapshot(final=True))
            self._stats_task = asyncio.create_task(self._stats_file.keep_written(self._snapshot))
        log.info("SMSC simulator listening", extra={"smpp_port": self.port})
        return self.port

    async def stop(self) -> None:
        self._stopped = True
        if self._server is not None:
            self._server.close()
        self.drop_connections()
        for task in (self._stats_task, self._sweeper):
            if task is not None:
                task.cancel()
        if self._server is not None:
            await self._server.wait_closed()
        if self._stats_file is not None:
            self._stats_file.write(*self._snapshot(final=True))

    def drop_connections(self) -> None:
        """Close every ESME connection abruptly (no unbind), as a crashing SMSC would."""
        for conn in list(self._conns):
            conn.close()

    @property
    def bound_connections(self) -> int:
        return sum(1 for c in self._conns if c.mode and not c.closed)

    def attach(self, conn: EsmeConnection) -> None:
        """A connection opened (closed: detach): it is counted, bound or not."""
        self._conns.add(conn)

    def detach(self, conn: EsmeConnection) -> None:
        self._conns.discard(conn)

    async def _sweep(self) -> None:
        step = max(0.01, min(0.25, self.cfg.response_timeout / 4))
        while True:
            await asyncio.sleep(step)
            now = time.monotonic()
            for conn in list(self._conns):
                conn.expire(now)

    def _snapshot(self, final: bool = False) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The ground truth files' content: the counters, and the per-destination maps when
        the DetailPacer says they are due (always in the first and the last)."""
        detail = self._detail.due() or final
        return {"smpp_port": self.port, **self.stats.counters()}, self.stats.maps() if detail else None

    # --- submit -------------------------------------------------------------------------
    def _ids(self) -> tuple[str, str]:
        n = self._next_id
        self._next_id += 1
        hex_id, dec_id = f"{n:08X}", f"{n:010d}"
        return {"hex": (hex_id, hex_id), "decimal": (dec_id, dec_id),
                "mixed": (hex_id, dec_id)}[self.cfg.id_style]

    def on_submit(self, conn: EsmeConnection, frame: pdu.Frame) -> None:
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
        faults = self.faults
        if faults.drop and faults.drop.search(dest):
            st.submits_dropped += 1
            return
        status = faults.refuse(dest, sm)
        if status is not None:
            conn.write(pdu.encode_submit_sm_resp(seq, "", status))
            return
        resp_id, receipt_id = self._ids()
        st.accept(dest, f"{dest}|{sm.short_message.hex()}")
        if self.cfg.keep_texts:
            self._keep_text(dest, sm)
        resp = pdu.encode_submit_sm_resp(seq, resp_id)
        stat, delay = faults.outcome(dest)
        if self.cfg.fail_part and stat == self.cfg.fail_stat:
            _text, concat = encoding.strip_udh(sm.short_message, sm.esm_class)
            if concat is not None and concat[2] != self.cfg.fail_part:
                stat = "DELIVRD"
        wanted = sm.registered_delivery & 0x03
        if not (wanted == 1 or (wanted == 2 and stat != "DELIVRD")):
            conn.write(resp)
            return
        out = Outbound(self._receipt_body(sm, receipt_id, stat), conn.system_id, conn)
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
        self.faults.add_receipt_rule(pattern, stat, delay)

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
