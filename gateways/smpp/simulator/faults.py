"""Fault injection: which submits the simulator refuses or drops, and what each receipt
says, by regexes over destination_addr (plus every-Nth refusals)."""

from __future__ import annotations

import re
from collections import Counter

from gateways.smpp import pdu
from gateways.smpp.simulator.config import SimulatorConfig
from gateways.smpp.simulator.stats import SimStats
from shared import smstext as encoding


def _pattern(value: str) -> re.Pattern[str] | None:
    return re.compile(value) if value else None


def _part_of(sm: pdu.ShortMessage) -> int:
    """Part number of a concatenated submit_sm (1 for a single-part message)."""
    _body, concat = encoding.strip_udh(sm.short_message, sm.esm_class)
    return 1 if concat is None else concat[2]


class FaultRules:
    """The configured faults, compiled once; refusals are counted in `stats`."""

    def __init__(self, cfg: SimulatorConfig, stats: SimStats) -> None:
        self.cfg = cfg
        self.stats = stats
        self.fail = _pattern(cfg.fail_pattern)
        self.reject = _pattern(cfg.reject_pattern)
        self.throttle = _pattern(cfg.throttle_pattern)
        self.drop = _pattern(cfg.drop_pattern)  # submits never answered
        self._throttled: set[str] = set()
        self.syserr = _pattern(cfg.syserr_pattern)
        self._syserrs: Counter[str] = Counter()
        self._rules = [(re.compile(p), stat, d) for p, stat, d in cfg.receipt_rules]

    def refuse(self, dest: str, sm: pdu.ShortMessage) -> int | None:
        """command_status of a submit the simulator refuses (or None to accept it)."""
        st, cfg = self.stats, self.cfg
        n = st.submits_total
        if self.reject and self.reject.search(dest):
            st.submits_rejected += 1
            return cfg.reject_status
        if cfg.throttle_every and n % cfg.throttle_every == 0:
            st.submits_throttled += 1
            return pdu.ESME_RTHROTTLED
        if cfg.queue_full_every and n % cfg.queue_full_every == 0:
            st.submits_queue_full += 1
            st.queue_full_by_dest[dest] += 1
            return pdu.ESME_RMSGQFUL
        if self.throttle and self.throttle.search(dest) and dest not in self._throttled \
                and (not cfg.throttle_part or _part_of(sm) == cfg.throttle_part):
            self._throttled.add(dest)
            st.submits_throttled += 1
            return pdu.ESME_RTHROTTLED
        if self.syserr and self.syserr.search(dest) and self._syserrs[dest] < cfg.syserr_times:
            self._syserrs[dest] += 1
            st.submits_syserr += 1
            return pdu.ESME_RSYSERR
        return None

    def add_receipt_rule(self, pattern: str, stat: str, delay: float | None) -> None:
        self._rules.append((re.compile(pattern), stat, delay))

    def outcome(self, dest: str) -> tuple[str, float]:
        """The stat of an accepted submit's receipt, and its delay."""
        for rx, stat, delay in self._rules:
            if rx.search(dest):
                return stat, self.cfg.receipt_delay if delay is None else delay
        if self.fail and self.fail.search(dest):
            return self.cfg.fail_stat, self.cfg.receipt_delay
        return "DELIVRD", self.cfg.receipt_delay
