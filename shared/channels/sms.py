"""SMS: phone numbers in E.164 (libphonenumber), masked unless the caller has PII rights;
SMPP source addresses as sender ids."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

import phonenumbers
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from shared import states
from shared.channels.spec import MAX_SENDER, AddressError, ChannelSpec, checked_input
from shared.config import setting
from shared.masking import mask_phone

DEFAULT_REGION = setting(
    "HERALD_DEFAULT_REGION", "GB",
    "ISO 3166 region used to read phone numbers written without a +country prefix "
    "(e.g. 07700 900123 -> +447700900123).",
    "recipients",
)
TEST_NUMBERS = setting(
    "HERALD_RECIPIENTS_TEST_NUMBERS", r"^\+447700900\d{3}$",
    "Regular expression of E.164 numbers accepted although libphonenumber marks them "
    "unassigned (default: Ofcom's fictional +44 7700 900xxx range, used by tests and demos). "
    "Empty = accept only assigned numbers.",
    "recipients",
)

# Numeric sources: long numbers (E.164 with or without "+") and short codes.
_NUMERIC = re.compile(r"\+?[0-9]{3,15}")
# Alphanumeric sources: at most 11 characters of the GSM-safe set carriers accept.
_ALPHANUMERIC = re.compile(r"[A-Za-z0-9 &'.,!?_\-+@#]{1,11}")

_EMPTY = e.SmsContent()


@functools.lru_cache(maxsize=8)
def _test_numbers(pattern: str) -> re.Pattern[str] | None:
    return re.compile(pattern) if pattern else None


def normalise_phone(raw: str, region: str | None = None, test_numbers: str | None = None) -> str:
    text = checked_input(raw)
    region = (region if region is not None else DEFAULT_REGION.get()).upper() or None
    try:
        num = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise AddressError(f"{text!r} is not a phone number ({exc.args[0] if exc.args else exc})") from exc
    except Exception as exc:  # any input must come back as a reason, never an INTERNAL
        raise AddressError(f"{text!r} is not a phone number") from exc
    e164 = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    if accepted_number(num, e164, test_numbers):
        return e164
    raise AddressError(f"{text!r} is not a valid phone number")


def accepted_number(num: phonenumbers.PhoneNumber, e164: str, test_numbers: str | None = None) -> bool:
    """A parsed number Herald sends to: valid by libphonenumber, or its E.164 form matches the
    test-number pattern (HERALD_TEST_NUMBERS unless test_numbers is given)."""
    if phonenumbers.is_valid_number(num):
        return True
    allowed = _test_numbers(test_numbers if test_numbers is not None else TEST_NUMBERS.get())
    return allowed is not None and allowed.fullmatch(e164) is not None


def sms_source(raw: str) -> str:
    text = raw.strip()
    if _NUMERIC.fullmatch(text):
        return text
    if _ALPHANUMERIC.fullmatch(text) and re.search(r"[A-Za-z]", text):
        return text
    raise AddressError(f"{text!r} is not an SMS source address (digits, or at most 11 letters, "
                       "digits and spaces)")


def sms_content(job: e.MessageJob) -> e.SmsContent:
    kind = job.WhichOneof("content")
    if kind == "sms":
        return job.sms
    if kind is None and job.text:  # queued by an older campaigns service
        return e.SmsContent(text=job.text)
    return _EMPTY


class SmsChannel(ChannelSpec):
    channel = c.CHANNEL_SMS
    name = "sms"
    label = "SMS"
    label_article = "an"
    subject = "jobs.sms"
    address_kind = "phone"
    address_noun = "phone number"
    address_field = "phone"
    content_fields = ("text",)
    final_statuses = frozenset(states.FINAL)

    def normalise_address(self, raw: str) -> str:
        return normalise_phone(raw)

    def normalise_reported(self, raw: str) -> str:
        try:
            return normalise_phone(raw)
        except AddressError:
            # SMPP source addresses often arrive as international digits without the "+".
            if raw.strip().isdigit():
                return normalise_phone("+" + raw.strip())
            raise

    def normalise_sender(self, raw: str) -> str:
        if len(raw) > MAX_SENDER or "\x00" in raw:
            raise AddressError(f"at most {MAX_SENDER} characters, no NUL")
        return sms_source(raw)

    def mask(self, address: str, pii: bool) -> str:
        return address if pii else mask_phone(address)

    def content(self, job: e.MessageJob) -> e.SmsContent:
        return sms_content(job)

    def set_content(self, job: e.MessageJob, fields: Mapping[str, str]) -> None:
        job.sms.text = fields.get("text", "")


SPEC = SmsChannel()
