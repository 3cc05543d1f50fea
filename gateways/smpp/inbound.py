"""deliver_sm from the SMSC: receipts -> parse (TLVs + Appendix B) -> the message they are
credited to (matching.py) -> per-part state -> publish DELIVERED (every part delivered) /
FAILED (any part failed) -> only then deliver_sm_resp OK. Anything else is a reply (mo.py)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from herald.v1 import events_pb2 as e

from gateways.core.group import GroupCommit
from gateways.core.retrying import retrying
from gateways.smpp import events, metrics, pdu, receipts
from gateways.smpp.binds import Route
from gateways.smpp.logs import log
from gateways.smpp.matching import Matcher, Receipt
from gateways.smpp.mo import Replies
from gateways.smpp.store import Store
from shared import jsfast

K = e  # top-level enum constants: EnumTypeWrapper lookups cost ~3 µs each (measured)


class Inbound:
    def __init__(self, store: Store, publisher: jsfast.Publisher, matcher: Matcher,
                 replies: Replies, spawn: Callable[[Awaitable[Any]], Any],
                 retry_for: float = 4.0) -> None:
        self.store = store
        # A receipt's recording and publication are retried this long before it is refused:
        # many SMSCs never resend a refused receipt.
        self.retry_for = retry_for
        self.publisher = publisher
        self.matcher = matcher
        self.replies = replies
        self.spawn = spawn
        # Four flushes at once: each waits on JetStream acks and Redis, not on our CPU.
        self.receipts: GroupCommit[Receipt] = GroupCommit(
            self._receipts_many, max_size=512, concurrency=4, done=self._receipts_failed)
        matcher.requeue = self.receipts.put
        self._receipt_counters = {stat: metrics.RECEIPTS.labels(stat)
                                  for stat in (*receipts.KNOWN_STATS, "OTHER")}

    def on_deliver(self, route: Route, frame: pdu.Frame, reply: Callable[[int], None]) -> None:
        try:
            sm = pdu.parse_sm(frame.raw)
        except pdu.ProtocolError as exc:  # unparseable: a resend cannot help
            metrics.RECEIPTS.labels("invalid").inc()
            log.error("undecodable deliver_sm dropped: %s", exc, extra={"pdu": frame.raw.hex()})
            reply(pdu.ESME_ROK)
            return
        if not receipts.is_receipt(sm.esm_class, sm.tlvs):
            self.spawn(self.replies.answer(sm, reply))
            return
        receipt = receipts.parse(sm.payload, sm.tlvs)
        if receipt is None:
            metrics.RECEIPTS.labels("invalid").inc()
            log.error("receipt without a message id dropped", extra={"text": sm.payload[:200]})
            reply(pdu.ESME_ROK)
            return
        self.receipts.put(Receipt(route, receipt, reply, sm.source_addr))

    @staticmethod
    def _receipts_failed(items: list[Receipt], exc: Exception | None) -> None:
        if exc is None:  # answered by _receipts_many (or waiting for their mapping)
            return
        log.warning("receipt batch failed, asking the SMSC to resend %d: %s", len(items), exc)
        for it in items:
            it.reply(pdu.ESME_RX_T_APPN)  # no-op for those already answered

    async def _receipts_many(self, items: list[Receipt]) -> None:
        found = await self.matcher.resolve(items)
        if not found:
            return
        multipart = [(m, it.receipt.stat) for it, m in found
                     if m.parts > 1 and it.receipt.final is not None]
        part_states = iter(await retrying(lambda: self.store.record_parts(multipart), self.retry_for,
                                          log, "recording receipt part states")
                           if multipart else [])
        out: list[events.Outgoing] = []
        replies: list[Receipt] = []
        now = time.time()
        stats: dict[str, int] = {}
        for it, m in found:
            r = it.receipt
            stats[r.stat] = stats.get(r.stat, 0) + 1
            replies.append(it)
            final = r.final
            if final is None:  # ENROUTE, ACCEPTD, ...: nothing to record yet
                continue
            if m.submitted_at:
                metrics.RECEIPT_LAG.observe(max(0.0, now - m.submitted_at))
            kind, category = final
            if m.parts > 1:
                states = next(part_states)
                failed = sorted(p for p, s in states.items() if s != "DELIVRD")
                if failed:
                    kind = K.MESSAGE_EVENT_KIND_FAILED
                    stat = states[failed[0]]
                    category = receipts.FINAL_STATS.get(stat, final)[1]
                    detail = f"part {failed[0]} of {m.parts}: "
                elif len(states) >= m.parts:
                    stat, detail = "DELIVRD", ""
                else:
                    continue  # other parts still to come
            else:
                stat, detail = r.stat, ""
            key = events.event_key(m.message_id, "dlr", m.attempt)
            ident = m if m.part == 1 else m.for_part(1, m.provider_id)
            fields: dict[str, Any] = dict(carrier_result=stat, provider_message_id=m.provider_id or m.smsc_id,
                                          parts=m.parts)
            if kind != K.MESSAGE_EVENT_KIND_DELIVERED:
                detail += f"carrier receipt stat:{stat} err:{r.err or '-'}"
                if r.network_error:
                    detail += f" network_error:{r.network_error}"
                fields.update(error_code=r.err, error_description=detail, failure_category=category)
            out.append(events.message(kind, ident, key, **fields))
        counters = self._receipt_counters
        for stat, n in stats.items():
            (counters.get(stat) or counters["OTHER"]).inc(n)
        await retrying(lambda: events.publish_many(self.publisher, out), self.retry_for, log,
                       "publishing receipt events")
        for it in replies:
            it.reply(pdu.ESME_ROK)
