"""SMPP addresses of a job: its destination and sender as (address, TON, NPI)."""

from __future__ import annotations

from herald.v1 import common_pb2 as c

from gateways.smpp.rejection import JobRejected
from shared import smstext as encoding

# The generated module's top-level enum constants: EnumTypeWrapper attribute access costs
# ~3 µs per lookup (measured).
FC = c

MAX_ALPHANUMERIC_SENDER = 11  # GSM limit for alphanumeric originators
MAX_CACHED_SENDERS = 4096

_NUMBER_PUNCTUATION = str.maketrans("", "", " -().")


def destination_address(to: str) -> tuple[str, int, int]:
    """E.164 '+447700900123' -> ('447700900123', TON international, NPI ISDN)."""
    if to[:1] == "+" and to.isascii() and to[1:].isdigit() and 4 <= len(to) <= 21:  # usual E.164
        return to[1:], 1, 1
    s = to.strip().translate(_NUMBER_PUNCTUATION)
    ton = 1
    if s.startswith("+"):
        s = s[1:]
    elif s.startswith("00"):
        s = s[2:]
    else:
        ton = 0  # unknown: let the SMSC interpret it
    if not (s.isascii() and s.isdigit()) or not 3 <= len(s) <= 20:
        raise JobRejected("INVALID_ADDRESS", f"destination {to!r} is not a phone number",
                          FC.FAILURE_CATEGORY_INVALID_ADDRESS)
    return s, ton, 1


def source_address(sender: str) -> tuple[str, int, int]:
    """Digits -> international (TON 1) or short code (TON 3); otherwise alphanumeric (TON 5)."""
    s = sender.strip()
    digits = s[1:] if s.startswith("+") else s
    if digits.isdigit() and len(digits) <= 20:
        return (digits, 1, 1) if len(digits) > 8 else (digits, 3, 0)
    if not s or len(s) > MAX_ALPHANUMERIC_SENDER or encoding.gsm7_encode(s) is None:
        raise JobRejected("INVALID_SENDER",
                          f"sender {sender!r} is not a number or 1-{MAX_ALPHANUMERIC_SENDER} GSM characters",
                          FC.FAILURE_CATEGORY_CONFIG_ERROR)
    return s, 5, 0


class Senders:
    """source_address per sender, parsed once: the same few senders repeat across a campaign."""

    def __init__(self) -> None:
        self._parsed: dict[str, tuple[str, int, int]] = {}

    def parse(self, sender: str) -> tuple[str, int, int]:
        parsed = self._parsed.get(sender)
        if parsed is None:
            parsed = source_address(sender)  # raises JobRejected: not cached
            if len(self._parsed) < MAX_CACHED_SENDERS:
                self._parsed[sender] = parsed
        return parsed
