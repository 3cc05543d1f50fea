"""What an SMTP attempt means for the message: submitted, failed (5xx) or deferred (4xx,
connection trouble), with the reply code, enhanced status code and failure category."""

from __future__ import annotations

import re
from dataclasses import dataclass

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from gateways.core import outcome as core
from gateways.email.smtp_pool import SmtpConfigError, SmtpConnectionError, SmtpReplyError

K = e  # top-level enum constants: e.MessageEventKind.X costs ~3 µs per lookup
F = c.FailureCategory

_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True)
class Outcome(core.Outcome):
    """The runtime's outcome, with the SMTP enhanced status code it carries."""

    @property
    def enhanced(self) -> str:
        return enhanced(self.description)


def enhanced(description: str) -> str:
    """The enhanced status code (RFC 3463) a reply text starts with, or ""."""
    m = _ENHANCED.match(description)
    return ".".join(m.groups()) if m else ""


def submitted(message_id_header: str, reply: str = "", route: str = "") -> Outcome:
    return Outcome(K.MESSAGE_EVENT_KIND_SUBMITTED, "250", reply.strip()[:500],
                   provider_id=message_id_header, route=route)


def failed(description: str, category: int, code: str = "") -> Outcome:
    return Outcome(K.MESSAGE_EVENT_KIND_FAILED, code, description[:500], category)


def category(code: int, text: str, stage: str) -> int:
    """stage: rcpt, mail or data (where the relay answered)."""
    m = _ENHANCED.match(text)
    if m:
        subject, detail = m.group(2), m.group(3)
        if subject == "1" or (subject == "2" and detail == "1"):  # bad/disabled mailbox
            return F.FAILURE_CATEGORY_INVALID_ADDRESS
        if subject in {"6", "7"} or (subject == "3" and detail == "4"):
            return F.FAILURE_CATEGORY_CONTENT_REJECTED
        if subject == "4" and detail == "6":  # routing loop / too many hops
            return F.FAILURE_CATEGORY_CONFIG_ERROR
    if stage == "mail":
        return F.FAILURE_CATEGORY_CONFIG_ERROR  # our envelope sender was refused
    if stage == "rcpt" and code in {550, 551, 553}:
        return F.FAILURE_CATEGORY_INVALID_ADDRESS
    if stage == "data" and code in {552, 554}:
        return F.FAILURE_CATEGORY_CONTENT_REJECTED
    return F.FAILURE_CATEGORY_UNKNOWN


def _reply(code: int, text: str, stage: str) -> Outcome:
    text = " ".join(text.split())[:500]
    if 400 <= code < 500:
        return Outcome(K.MESSAGE_EVENT_KIND_DEFERRED, str(code), text)
    return Outcome(K.MESSAGE_EVENT_KIND_FAILED, str(code), text, category(code, text, stage))


def from_exception(exc: BaseException) -> Outcome:
    if isinstance(exc, SmtpReplyError):
        if exc.stage == "auth":
            return failed(f"SMTP AUTH refused: {exc.code} {exc.message}",
                          F.FAILURE_CATEGORY_CONFIG_ERROR, str(exc.code))
        stage = "mail" if exc.stage in {"mail", "ehlo", "starttls", "connect"} else exc.stage
        if exc.stage in {"connect", "ehlo", "starttls"} and 400 <= exc.code < 500:
            return Outcome(K.MESSAGE_EVENT_KIND_DEFERRED, str(exc.code),
                           " ".join(exc.message.split())[:500])
        return _reply(exc.code, exc.message, stage)
    if isinstance(exc, SmtpConfigError):
        return failed(f"relay configuration: {exc}", F.FAILURE_CATEGORY_CONFIG_ERROR)
    if isinstance(exc, SmtpConnectionError | OSError | TimeoutError):
        return Outcome(K.MESSAGE_EVENT_KIND_DEFERRED, "",
                       f"connection error: {type(exc).__name__}: {exc}"[:500])
    # Anything else is our bug, not the message's: retry it like a connection error.
    return Outcome(K.MESSAGE_EVENT_KIND_DEFERRED, "", f"internal error: {type(exc).__name__}: {exc}"[:500])


def exhausted(last: core.Outcome, attempts: int) -> Outcome:
    """A deferral after the last allowed attempt becomes the final failure."""
    cat = F.FAILURE_CATEGORY_UNKNOWN
    if enhanced(last.description).startswith("4.7.") or last.code in {"421", "450"}:
        cat = F.FAILURE_CATEGORY_THROTTLED
    return Outcome(K.MESSAGE_EVENT_KIND_FAILED, last.code,
                   f"{last.description[:450]} (gave up after {attempts} attempts)", cat,
                   route=last.route)


ABANDONED = core.ABANDONED
# reason label -> why this job's send is unknowable (bounded: the metric's label values)
ABANDON_REASONS = {
    "worker_stopped": "a worker wrote the message to the relay and stopped before recording "
                      "its answer",
    "redis_lost": "Redis lost the send markers and this job had been delivered before",
    "corrupt_marker": "the job's send marker could not be read",
}


def abandoned(reason: str) -> core.Outcome:
    """FAILED: the relay may have accepted the message, and it is not sent again (a second
    copy is worse than none; an operator retry, a new attempt, sends it deliberately)."""
    return core.abandoned(ABANDON_REASONS[reason], "relay")
