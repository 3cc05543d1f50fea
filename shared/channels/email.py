"""Email: addresses checked by email-validator (domain lower-cased, local part kept), shown
unmasked; From domains as sender ids."""

from __future__ import annotations

import re
from collections.abc import Mapping
from email.utils import parseaddr
from functools import lru_cache

import email_validator
from email_validator import EmailNotValidError, validate_email
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from shared import states
from shared.channels.spec import MAX_SENDER, AddressError, ChannelSpec, checked_input

_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_EMPTY = e.EmailContent()


# The fast path below takes only plain ASCII dot-atom local parts: the library accepts these
# as they are (no quoting, no Unicode normalisation), so the address's result depends on the
# local part only through the total length check and RFC 2142's case-insensitive names.
_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*")
_PLAIN_DOMAIN = re.compile(r"[A-Za-z0-9.-]+")
# RFC 2142 role names, which the library lower-cases; such local parts go through the library.
_ROLE_NAMES = frozenset(
    "info marketing sales support abuse noc security postmaster hostmaster usenet news"
    " webmaster www uucp ftp".split()
)
_MAX_ADDRESS = 254  # the library's limit on each form of the address, in UTF-8 bytes


@lru_cache(maxsize=4096)
def _checked_domain(
    domain: str, test_env: bool, global_only: bool, special: tuple[str, ...]
) -> tuple[str, int] | None:
    """(normalised domain, longest of its written/normalised/ASCII forms in UTF-8 bytes), or
    None if the library rejects it. The library's module options that change a domain's
    result are part of the key, so a caller changing them never gets a stale answer."""
    del test_env, global_only, special  # read by validate_email itself; here only cache keys
    try:
        v = validate_email("a@" + domain, check_deliverability=False)
    except Exception:  # the library gives the reason on the slow path
        return None
    longest = max(len(domain), len(v.domain.encode("utf8")), len(v.ascii_domain))
    return str(v.domain), longest


def fast_normalised_email(text: str) -> str | None:
    """validate_email(text, check_deliverability=False).normalized for a plain ASCII address
    the library accepts, or None when this cannot tell (the library must decide)."""
    if not text.isascii() or email_validator.STRICT:
        return None
    local, at, domain = text.partition("@")
    if not at or not _PLAIN_LOCAL.fullmatch(local) or not _PLAIN_DOMAIN.fullmatch(domain):
        return None
    if local.lower() in _ROLE_NAMES:
        return None
    checked = _checked_domain(
        domain,
        email_validator.TEST_ENVIRONMENT,
        email_validator.GLOBALLY_DELIVERABLE,
        tuple(email_validator.SPECIAL_USE_DOMAIN_NAMES),
    )
    if checked is None or len(local) + 1 + checked[1] > _MAX_ADDRESS:
        return None
    return local + "@" + checked[0]


def normalise_email(raw: str) -> str:
    text = checked_input(raw)
    # Most imported addresses are plain ASCII on a handful of domains: the library's answer
    # for the domain is reused, and only the local part is checked per address.
    fast = fast_normalised_email(text)
    if fast is not None:
        return fast
    try:
        # Keeps the local part as written (it may be case-sensitive) and lower-cases the domain.
        return str(validate_email(text, check_deliverability=False).normalized)
    except EmailNotValidError as exc:
        raise AddressError(f"{text!r} is not a valid email address ({exc})") from exc
    except Exception as exc:  # any input must come back as a reason, never an INTERNAL
        raise AddressError(f"{text!r} is not a valid email address") from exc


def email_domain(raw: str) -> str:
    """The domain of "Name <a@news.example.com>", "a@news.example.com" or "news.example.com"."""
    text = raw.strip()
    if "@" in text or "<" in text:
        _, addr = parseaddr(text)
        if addr.count("@") != 1 or not addr.split("@", 1)[0]:
            raise AddressError(f"{text!r} is not an email From address or domain")
        text = addr.split("@", 1)[1]
    domain = text.rstrip(".").lower()
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except (UnicodeError, ValueError) as exc:
        raise AddressError(f"{text!r} is not a domain name") from exc
    labels = ascii_domain.split(".")
    if len(ascii_domain) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(x) for x in labels):
        raise AddressError(f"{text!r} is not a domain name")
    return ascii_domain


def email_content(job: e.MessageJob) -> e.EmailContent:
    kind = job.WhichOneof("content")
    if kind == "email":
        return job.email
    if kind is None and (job.subject or job.text or job.html):
        return e.EmailContent(subject=job.subject, text=job.text, html=job.html)
    return _EMPTY


class EmailChannel(ChannelSpec):
    channel = c.CHANNEL_EMAIL
    name = "email"
    label = "email"
    label_article = "an"
    subject = "jobs.email"
    address_kind = "email"
    address_noun = "email address"
    address_article = "an"
    address_field = "email"
    content_fields = ("subject", "text", "html")
    # An email accepted by the relay is settled: nothing more happens unless a bounce arrives
    # later (which may still move it to FAILED).
    final_statuses = frozenset(states.FINAL | {c.MESSAGE_STATUS_SUBMITTED})

    def normalise_address(self, raw: str) -> str:
        return normalise_email(raw)

    def normalise_sender(self, raw: str) -> str:
        if len(raw) > MAX_SENDER or "\x00" in raw:
            raise AddressError(f"at most {MAX_SENDER} characters, no NUL")
        return email_domain(raw)

    def match_key(self, address: str) -> str:
        # An unsubscribe by Alice@example.com must also stop alice@example.com.
        return address.lower()

    def content(self, job: e.MessageJob) -> e.EmailContent:
        return email_content(job)

    def set_content(self, job: e.MessageJob, fields: Mapping[str, str]) -> None:
        job.email.subject = fields.get("subject", "")
        job.email.text = fields.get("text", "")
        job.email.html = fields.get("html", "")


SPEC = EmailChannel()
