"""Address normalisation: phones to E.164 (libphonenumber), emails with email-validator.

Each function returns the normalised address or raises BadAddress with a reason."""

from __future__ import annotations

import functools
import re

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from herald.v1 import common_pb2 as c

from services.recipients import settings

MAX_INPUT = 320  # longer than any address (RFC 5321 paths are at most 256 octets)


class BadAddress(ValueError):
    pass


@functools.lru_cache(maxsize=8)
def _test_numbers(pattern: str) -> re.Pattern[str] | None:
    return re.compile(pattern) if pattern else None


def normalise_phone(raw: str, region: str | None = None, test_numbers: str | None = None) -> str:
    text = raw.strip()
    if not text:
        raise BadAddress("is empty")
    region = (region if region is not None else settings.DEFAULT_REGION.get()).upper() or None
    if len(text) > MAX_INPUT:
        raise BadAddress(f"is longer than {MAX_INPUT} characters")
    try:
        num = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise BadAddress(f"{text!r} is not a phone number ({exc._msg})") from exc
    except Exception as exc:  # any input must come back as a reason, never an INTERNAL
        raise BadAddress(f"{text!r} is not a phone number") from exc
    e164 = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    if phonenumbers.is_valid_number(num):
        return e164
    allowed = _test_numbers(test_numbers if test_numbers is not None else settings.TEST_NUMBERS.get())
    if allowed is not None and allowed.fullmatch(e164):
        return e164
    raise BadAddress(f"{text!r} is not a valid phone number")


def normalise_email(raw: str) -> str:
    text = raw.strip()
    if not text:
        raise BadAddress("is empty")
    if len(text) > MAX_INPUT:
        raise BadAddress(f"is longer than {MAX_INPUT} characters")
    try:
        # Keeps the local part as written (it may be case-sensitive) and lower-cases the domain.
        return str(validate_email(text, check_deliverability=False).normalized)
    except EmailNotValidError as exc:
        raise BadAddress(f"{text!r} is not a valid email address ({exc})") from exc
    except Exception as exc:  # any input must come back as a reason, never an INTERNAL
        raise BadAddress(f"{text!r} is not a valid email address") from exc


def normalise(channel: int, raw: str) -> str:
    if channel == c.CHANNEL_SMS:
        return normalise_phone(raw)
    if channel == c.CHANNEL_EMAIL:
        return normalise_email(raw)
    raise BadAddress("unknown channel")


def match_key(channel: int, address: str) -> str:
    """Key for de-duplication and the suppression list. Emails compare case-insensitively:
    an unsubscribe by Alice@example.com must also stop alice@example.com."""
    return address.lower() if channel == c.CHANNEL_EMAIL else address


def address_noun(channel: int) -> str:
    return "phone number" if channel == c.CHANNEL_SMS else "email address"
