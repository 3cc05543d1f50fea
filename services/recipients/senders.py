"""Sender ids as they are registered and compared: SMS source addresses as sent, email From
domains lower-cased (IDNA), whatever form the From was written in."""

from __future__ import annotations

import re
from email.utils import parseaddr

from herald.v1 import common_pb2 as c

from services.recipients.normalize import BadAddress

MAX_SENDER = 320
# Numeric sources: long numbers (E.164 with or without "+") and short codes.
_NUMERIC = re.compile(r"\+?[0-9]{3,15}")
# Alphanumeric sources: at most 11 characters of the GSM-safe set carriers accept.
_ALPHANUMERIC = re.compile(r"[A-Za-z0-9 &'.,!?_\-+@#]{1,11}")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def sms_source(raw: str) -> str:
    text = raw.strip()
    if _NUMERIC.fullmatch(text):
        return text
    if _ALPHANUMERIC.fullmatch(text) and re.search(r"[A-Za-z]", text):
        return text
    raise BadAddress(f"{text!r} is not an SMS source address (digits, or at most 11 letters, "
                     "digits and spaces)")


def email_domain(raw: str) -> str:
    """The domain of "Name <a@news.example.com>", "a@news.example.com" or "news.example.com"."""
    text = raw.strip()
    if "@" in text or "<" in text:
        _, addr = parseaddr(text)
        if addr.count("@") != 1 or not addr.split("@", 1)[0]:
            raise BadAddress(f"{text!r} is not an email From address or domain")
        text = addr.split("@", 1)[1]
    domain = text.rstrip(".").lower()
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except (UnicodeError, ValueError) as exc:
        raise BadAddress(f"{text!r} is not a domain name") from exc
    labels = ascii_domain.split(".")
    if len(ascii_domain) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(x) for x in labels):
        raise BadAddress(f"{text!r} is not a domain name")
    return ascii_domain


def sender_address(channel: int, raw: str) -> str:
    """The key a sender is registered under on its channel, or BadAddress."""
    if len(raw) > MAX_SENDER or "\x00" in raw:
        raise BadAddress(f"at most {MAX_SENDER} characters, no NUL")
    if channel == c.CHANNEL_SMS:
        return sms_source(raw)
    if channel == c.CHANNEL_EMAIL:
        return email_domain(raw)
    raise BadAddress("unknown channel")
