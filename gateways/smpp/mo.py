"""Replies (MO deliver_sm): events.message.replied linked to the last message sent to that
number from that sender; opt-out keywords -> events.contact.opted_out too."""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable

from herald.v1 import events_pb2 as e

from gateways.core.retrying import retrying
from gateways.smpp import events, metrics, pdu, ratelog
from gateways.smpp.logs import log
from gateways.smpp.store import Store
from shared import jsfast
from shared import smstext as encoding
from shared.masking import mask_phone

K = e  # top-level enum constants: EnumTypeWrapper lookups cost ~3 µs each (measured)


def fold(word: str) -> str:
    """'Arrêt' -> 'ARRET': keywords match in any case and with or without accents."""
    nfkd = unicodedata.normalize("NFKD", word)
    return "".join(ch for ch in nfkd if not unicodedata.combining(ch)).upper()


class Replies:
    def __init__(self, store: Store, publisher: jsfast.Publisher,
                 opt_out_keywords: tuple[str, ...], retry_for: float = 4.0) -> None:
        self.store = store
        self.retry_for = retry_for  # handling a reply, before asking the SMSC to resend it
        self.publisher = publisher
        self.opt_out_keywords = opt_out_keywords  # folded (see fold)
        self._log = ratelog.RateLimitedLog(log)

    async def answer(self, sm: pdu.ShortMessage, reply: Callable[[int], None]) -> None:
        """Handle a reply, then answer its deliver_sm (a resend on failure)."""
        try:
            status = await retrying(lambda: self.handle(sm), self.retry_for, log, "handling a reply")
        except Exception:
            log.exception("reply handling failed; asking the SMSC to resend")
            status = pdu.ESME_RX_T_APPN
        reply(status)

    async def handle(self, sm: pdu.ShortMessage) -> int:
        """A reply: events.message.replied linked to the last message sent from that sender
        (our number) to that phone, plus events.contact.opted_out for opt-out keywords."""
        body, _concat = encoding.strip_udh(sm.payload, sm.esm_class)
        text = encoding.decode(body, sm.data_coding)
        phone = "".join(ch for ch in sm.source_addr if ch.isdigit())
        if phone.startswith("00"):
            phone = phone[2:]
        # (our sender, their number) -> the last message: senders belong to one workspace,
        # so the reply and any opt-out go to that message's workspace and no other.
        link = await self.store.last_sent(sm.destination_addr, phone)
        if link is None:  # no message to answer: published to no workspace at all
            metrics.MO_MESSAGES.labels("unlinked").inc()
            self._log.info("unlinked", "reply with no message from that sender to that number: not published",
                           **{"from": mask_phone(phone), "to": sm.destination_addr})
            return pdu.ESME_ROK
        address = ("+" + phone) if sm.source_addr_ton == 1 or not sm.source_addr.startswith("0") else sm.source_addr
        digest = hashlib.sha256(sm.source_addr.encode() + b"\0" + sm.destination_addr.encode()
                                + b"\0" + sm.payload + link.job.encode()).hexdigest()[:24]
        out = [events.message(K.MESSAGE_EVENT_KIND_REPLIED, link, f"mo:{digest}",
                              reply_text=text, reply_from=address, provider_message_id=link.provider_id)]
        words = text.strip().split()
        keyword = fold(words[0].strip(".!")) if words else ""
        outcome = "replied"
        if keyword and keyword in self.opt_out_keywords:
            out.append(events.opted_out(link, address, keyword, f"mo-optout:{digest}"))
            outcome = "opted_out"
        await events.publish_many(self.publisher, out)
        metrics.MO_MESSAGES.labels(outcome).inc()
        return pdu.ESME_ROK
