"""Inbound SMTP (aiosmtpd) for the VERP domain: delivery status notifications and
complaints, turned into events.

- DSN (RFC 3464, multipart/report; report-type=delivery-status): per recipient block
  Action, Status, Diagnostic-Code. Status 5.x.x -> hard bounce: events.message.bounced
  (status FAILED, reply code, "bounced: <enhanced status> <diagnostic>", failure category
  from the status: INVALID_ADDRESS for a bad mailbox, never UNSUBSCRIBED) and
  events.contact.bounced (the recipients service suppresses the address). 4.x.x (or
  Action: delayed) -> events.message.deferred. Action delivered/relayed/expanded: ignored.
- ARF (RFC 5965, report-type=feedback-report) -> events.contact.complained (opt-out).

The message is identified only by a signed VERP address: the envelope recipient, or for
complaints (sent to a feedback mailbox) the Return-Path of the original message they
quote. Unsigned hints (a Message-ID in the quoted headers) are never trusted: anyone can
send mail here. Address, campaign and workspace come from the send's Redis reference.
Mail that is unmatched or malformed is accepted, logged and counted; the server never
fails on content. Only a bus failure answers 451 so the reporting MTA retries.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import re
from dataclasses import dataclass, field
from email.message import Message
from email.parser import HeaderParser
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from nats.js import JetStreamContext
from prometheus_client import Counter

from gateways.email import dedup, outcomes, tokens
from gateways.email.events import message_event, publish_message_event, stable_event_id
from shared import bus
from shared.metrics import split_addr
from shared.timeutil import now_ts

log = logging.getLogger("herald.email.bounces")

K = e  # top-level enum constants: e.MessageEventKind.X costs ~3 µs per lookup
INBOUND = Counter(
    "herald_email_inbound_total",
    "Inbound mail on the bounce server, by kind (dsn, arf, other) and result (hard, soft, "
    "complaint, ignored, unmatched, malformed, error).",
    ["kind", "result"],
)

_STATUS = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})")
# "550 5.1.1 No such user", "550-5.1.1 ...", or the bare code "550" (text empty).
_REPLY = re.compile(r"^\s*([245]\d\d)(?:[\s-]+|$)(.*)$", re.DOTALL)


@dataclass
class RecipientStatus:
    final_recipient: str = ""
    action: str = ""
    status: str = ""
    diagnostic: str = ""  # the Diagnostic-Code text after "smtp;"

    @property
    def reply_code(self) -> str:
        m = _REPLY.match(self.diagnostic)
        return m.group(1) if m else ""


@dataclass
class Report:
    kind: str  # dsn | arf | other
    recipients: list[RecipientStatus] = field(default_factory=list)
    feedback_type: str = ""
    original: dict[str, str] = field(default_factory=dict)  # quoted original headers


def _fields(part: Message) -> list[Message]:
    """Header blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    if isinstance(payload, str):
        return [HeaderParser().parsestr(block.strip() + "\n\n")
                for block in re.split(r"\r?\n\r?\n", payload) if block.strip()]
    return []


def _value(block: Message, name: str) -> str:
    v = block.get(name)
    return " ".join(str(v).split()) if v is not None else ""


def _typed(value: str) -> str:
    """'rfc822; a@example.com' -> 'a@example.com'; 'smtp; 550 ...' -> '550 ...'."""
    return value.split(";", 1)[1].strip() if ";" in value else value.strip()


def parse_report(raw: bytes) -> Report:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    report_type = (msg.get_param("report-type") or "").lower() if msg.get_content_type() == "multipart/report" else ""
    rep = Report("other")
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            rep.kind = "dsn"
            blocks = _fields(part)
            for block in blocks[1:] if len(blocks) > 1 else blocks:
                if not (block.get("Action") or block.get("Status")):
                    continue
                rep.recipients.append(RecipientStatus(
                    _typed(_value(block, "Final-Recipient") or _value(block, "Original-Recipient")),
                    _value(block, "Action").lower(), _value(block, "Status"),
                    _typed(_value(block, "Diagnostic-Code"))))
        elif ctype == "message/feedback-report":
            rep.kind = "arf"
            blocks = _fields(part)
            if blocks:
                rep.feedback_type = _value(blocks[0], "Feedback-Type").lower() or "abuse"
        elif ctype in {"message/rfc822", "text/rfc822-headers"} and not rep.original:
            if ctype == "message/rfc822":
                inner = part.get_payload()
                inner_msg = inner[0] if isinstance(inner, list) and inner else None
            else:
                text = part.get_payload(decode=True) or b""
                inner_msg = HeaderParser().parsestr(text.decode("utf-8", "replace"))
            if isinstance(inner_msg, Message):
                rep.original = {k.lower(): str(v) for k, v in inner_msg.items()}
    if rep.kind == "other" and report_type == "feedback-report":
        rep.kind = "arf"
    return rep


class BounceHandler:
    def __init__(self, js: JetStreamContext, signer: tokens.Signer,
                 markers: dedup.SendMarkers) -> None:
        self.js = js
        self.signer = signer
        self.markers = markers

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        # Everything is accepted (nothing is ever relayed): unmatched mail is counted.
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw: Any = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        try:
            await self.process(list(envelope.rcpt_tos), raw)
        except bus_errors() as exc:
            log.warning("bounce not recorded (bus), asking the sender to retry: %s", exc)
            INBOUND.labels("other", "error").inc()
            return "451 4.3.0 Temporary failure, try again later"
        except Exception:
            log.exception("inbound mail could not be processed")
            INBOUND.labels("other", "malformed").inc()
        return "250 2.0.0 OK"

    def _reference(self, rcpts: list[str], rep: Report) -> tuple[str, int] | None:
        for r in rcpts:
            ref = tokens.parse_verp(self.signer, r)
            if ref:
                return ref
        for name in ("return-path", "x-original-return-path", "sender"):
            value = rep.original.get(name, "")
            m = re.search(r"<?([^<>\s]+@[^<>\s]+)>?", value)
            if m:
                ref = tokens.parse_verp(self.signer, m.group(1))
                if ref:
                    return ref
        return None

    async def process(self, rcpts: list[str], raw: bytes) -> str:
        """Returns the result label (also counted)."""
        try:
            rep = parse_report(raw)
        except Exception:
            log.warning("unparseable inbound mail", exc_info=True)
            INBOUND.labels("other", "malformed").inc()
            return "malformed"
        result = await self._process(rcpts, rep)
        INBOUND.labels(rep.kind, result).inc()
        return result

    async def _process(self, rcpts: list[str], rep: Report) -> str:
        if rep.kind == "other" or (rep.kind == "dsn" and not rep.recipients):
            log.info("inbound mail is neither a DSN nor a complaint", extra={"rcpts": rcpts[:3]})
            return "malformed" if rep.kind == "dsn" else "ignored"
        found = self._reference(rcpts, rep)
        if found is None:
            log.info("inbound report without a valid VERP reference", extra={"kind": rep.kind})
            return "unmatched"
        message_id, attempt = found
        ref = await self.markers.ref(message_id)
        if ref is None:
            log.info("report for an unknown or expired message", extra={"message_id": message_id})
            return "unmatched"
        if rep.kind == "arf":
            await self._contact(e.CONTACT_EVENT_KIND_COMPLAINED, "events.contact.complained",
                                message_id, ref, f"complaint: {rep.feedback_type}",
                                f"{message_id}:complained")
            return "complaint"
        # One message, one recipient: the first block that says something decides.
        for st in rep.recipients:
            status = st.status or (st.diagnostic and _enhanced(st.diagnostic)) or ""
            klass = status[:1]
            if st.action in {"delivered", "relayed", "expanded"}:
                continue
            if klass == "5" or (st.action == "failed" and klass != "4"):
                await self._hard(message_id, attempt, ref, st, status or "5.0.0")
                return "hard"
            if klass == "4" or st.action == "delayed":
                await self._soft(message_id, attempt, ref, st, status or "4.0.0")
                return "soft"
        return "ignored"

    def _event(self, kind: int, message_id: str, attempt: int, ref: dict[str, str],
               st: RecipientStatus, status: str, msg_id: str) -> e.MessageEvent:
        code = st.reply_code
        text = st.diagnostic
        m = _REPLY.match(text)
        if m:
            text = m.group(2)
        description = text if text.startswith(status) else f"{status} {text}".strip()
        category = c.FAILURE_CATEGORY_UNSPECIFIED
        if kind == K.MESSAGE_EVENT_KIND_BOUNCED:
            # What the receiving side said about the address or content, never an opt-out:
            # the reader sees "bounced: 5.1.1 ...".
            category = outcomes.category(int(code or 550), description, "rcpt")
            description = f"bounced: {description}"
        return message_event(
            kind, message_id=message_id, campaign_id=ref.get("c", ""),
            workspace_id=ref.get("w", ""), event_id=stable_event_id(msg_id), error_code=code,
            error_description=description[:500], failure_category=category,
            variant=ref.get("v", ""), to=ref.get("to", ""), attempt=attempt)

    async def _hard(self, message_id: str, attempt: int, ref: dict[str, str],
                    st: RecipientStatus, status: str) -> None:
        msg_id = f"{message_id}:bounced:{attempt}"
        ev = self._event(K.MESSAGE_EVENT_KIND_BOUNCED, message_id, attempt, ref, st, status, msg_id)
        await publish_message_event(self.js, ev, msg_id)
        await self._contact(e.CONTACT_EVENT_KIND_BOUNCED, "events.contact.bounced", message_id,
                            ref, status, f"{message_id}:contact-bounced")

    async def _soft(self, message_id: str, attempt: int, ref: dict[str, str],
                    st: RecipientStatus, status: str) -> None:
        msg_id = f"{message_id}:dsn-deferred:{attempt}:{status}"
        ev = self._event(K.MESSAGE_EVENT_KIND_DEFERRED, message_id, attempt, ref, st, status, msg_id)
        await publish_message_event(self.js, ev, msg_id)

    async def _contact(self, kind: int, subject: str, message_id: str, ref: dict[str, str],
                       reason: str, msg_id: str) -> None:
        ev = e.ContactEvent(
            event_id=stable_event_id(msg_id), kind=kind,  # type: ignore[arg-type]
            workspace_id=ref.get("w", ""), channel=c.CHANNEL_EMAIL, address=ref.get("to", ""),
            contact_id=ref.get("ct", ""), message_id=message_id, campaign_id=ref.get("c", ""),
            reason=reason, occurred_at=now_ts())
        await bus.publish(self.js, subject, ev, msg_id)


def _enhanced(text: str) -> str:
    m = _REPLY.match(text)
    rest = m.group(2) if m else text
    s = _STATUS.match(rest)
    return ".".join(s.groups()) if s else ""


def bus_errors() -> tuple[type[BaseException], ...]:
    import nats.errors
    import nats.js.errors
    return (nats.errors.Error, nats.js.errors.Error, TimeoutError, ConnectionError)


class BounceServer:
    def __init__(self, js: JetStreamContext, signer: tokens.Signer, markers: dedup.SendMarkers,
                 max_size: int = 10 * 1024 * 1024) -> None:
        self.handler = BounceHandler(js, signer, markers)
        self.max_size = max_size
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, addr: str) -> int:
        host, port = split_addr(addr)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self.handler, hostname="herald-bounces", ident="Herald bounces",
                         data_size_limit=self.max_size, enable_SMTPUTF8=True, loop=loop),
            host, port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
