"""Address normalisation of the recipients service, through the channel registry: phones to
E.164 (libphonenumber), emails with email-validator (shared.channels.sms / .email).

Each function returns the normalised address or raises BadAddress with a reason.

normalise_phone reads a number already written in E.164 ("+447700900123", what most
imports carry) without libphonenumber's parser, whose lenient reading of any form (national,
IDD, extensions, vanity letters, RFC 3966) is most of the cost of a row: the country code and
the validity check are libphonenumber's own, and every case where its parser would do more
than split the country code off (a national prefix or a leading zero after it, an unknown
country code) goes through it. tests/unit/test_recipients_normalize_e164.py checks the two
ways agree."""

from __future__ import annotations

import re

import phonenumbers

from shared import channels
from shared.channels.email import normalise_email
from shared.channels.sms import accepted_number
from shared.channels.sms import normalise_phone as parse_phone
from shared.channels.spec import MAX_INPUT

BadAddress = channels.AddressError

__all__ = ["MAX_INPUT", "BadAddress", "address_noun", "match_key", "normalise", "normalise_email",
           "normalise_phone", "parse_phone"]

# Metadata patterns compiled once, not looked up in re's bounded cache on every call.
phonenumbers.enable_pattern_cache()

# "+" and 7 to 15 ASCII digits, the first not 0 (E.164 allows at most 15).
_E164 = re.compile(r"\+([1-9][0-9]{6,14})")
_CODES = phonenumbers.COUNTRY_CODE_TO_REGION_CODE
# Per country code: its national prefix pattern (None: none), as the parser would use it.
_PREFIX: dict[int, re.Pattern[str] | None] = {}


def _national_prefix(cc: int) -> re.Pattern[str] | None:
    try:
        return _PREFIX[cc]
    except KeyError:
        pass
    meta = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(
        cc, phonenumbers.region_code_for_country_code(cc))
    npp = meta.national_prefix_for_parsing if meta is not None else None
    _PREFIX[cc] = pattern = re.compile(npp) if npp else None
    return pattern


def e164_parts(text: str) -> tuple[int, int] | None:
    """(country code, national number) of text when libphonenumber's parser would read it as
    exactly that, else None (let the parser decide)."""
    m = _E164.fullmatch(text)
    if m is None:
        return None
    digits = m.group(1)
    # The parser's rule: the shortest prefix (1 to 3 digits) that is a country code.
    for n in (1, 2, 3):
        cc = int(digits[:n])
        if cc in _CODES:
            break
    else:
        return None
    nsn = digits[n:]
    if nsn[0] == "0":  # Italian leading zeros, or a national prefix the parser may strip
        return None
    prefix = _national_prefix(cc)
    if prefix is not None and prefix.match(nsn):  # the parser may strip or transform it
        return None
    return cc, int(nsn)


def normalise_phone(raw: str, region: str | None = None, test_numbers: str | None = None) -> str:
    """E.164 form of raw, read as shared.channels.sms.normalise_phone reads it."""
    text = raw.strip()
    parts = e164_parts(text) if len(text) <= 16 else None
    if parts is None:
        return parse_phone(raw, region, test_numbers)
    num = phonenumbers.PhoneNumber(country_code=parts[0], national_number=parts[1])
    if accepted_number(num, text, test_numbers):
        return text
    raise BadAddress(f"{text!r} is not a valid phone number")


def normalise(channel: int, raw: str) -> str:
    try:
        spec = channels.spec(channel)
    except channels.UnknownChannel:
        raise BadAddress("unknown channel") from None
    return spec.normalise_address(raw)


def match_key(channel: int, address: str) -> str:
    """Key for de-duplication and the suppression list (emails compare case-insensitively)."""
    return channels.spec(channel).match_key(address)


def address_noun(channel: int) -> str:
    return channels.spec(channel).address_noun
