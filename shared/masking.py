"""Phone masking by the caller's rights, applied at read time to every field that can carry a
phone number: addresses, free-text descriptions, reply senders, export cells, audit values."""

from __future__ import annotations

import re
from typing import Protocol

# A phone number in text: "+" and 7-15 digits, or 9-15 digits without it (national forms
# such as "07700 900123"); groups may be split by spaces or dashes ("+" forms also dots).
# Not inside words, ids or times: no letter, digit, dash or colon right before or after, so
# UUID groups, dates and "2026-12-01 09:00" stay whole.
_PHONE = re.compile(r"(?<![\w\-+:])(?:\+\d(?:[ \-.]?\d){6,14}|\d(?:[ \-]?\d){8,14})(?![\w\-:])")


class HasPii(Protocol):
    pii: bool


def mask_phone(phone: str, principal: HasPii | None = None) -> str:
    """Keep the last 3 digits visible unless the principal may see PII."""
    if not phone or (principal is not None and principal.pii):
        return phone
    return "*" * max(len(phone) - 3, 0) + phone[-3:]


def mask_text(text: str, principal: HasPii | None = None) -> str:
    """Mask every phone-like run inside free text (error descriptions, notes, CSV cells)."""
    if not text or (principal is not None and principal.pii):
        return text
    return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)
