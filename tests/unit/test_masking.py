"""Phone masking in free text: every phone goes, nothing else is touched."""

import pytest

from shared.auth import Principal
from shared.masking import mask_phone, mask_text

VIEWER = Principal("v", "w", frozenset({"viewer"}), pii=False)
PII = Principal("p", "w", frozenset({"viewer"}), pii=True)


@pytest.mark.parametrize(("text", "masked"), [
    ("The phone number +447700900302 has unsubscribed",
     "The phone number **********302 has unsubscribed"),
    ("call +44 7700 900302.", "call ************302."),
    ("bare 447700900302 here", "bare *********302 here"),
    ("The phone number 07700 90012 is incorrect", "The phone number ********012 is incorrect"),
    ("+447700900301,+447700900302", "**********301,**********302"),
])
def test_phones_in_text_are_masked(text: str, masked: str) -> None:
    assert mask_text(text, VIEWER) == masked
    assert mask_text(text, PII) == text


@pytest.mark.parametrize("text", [
    "unknown category a10a26a2-4199-4235-bb99-8e268e71e41b",
    "outside sending window (reopens 2026-12-01 09:00)",
    "order 12345678", "SMPP 0x00000058 throttled", "5.1.1 user unknown",
])
def test_ids_dates_and_codes_are_left_alone(text: str) -> None:
    assert mask_text(text, VIEWER) == text


def test_mask_phone_keeps_last_three_digits() -> None:
    assert mask_phone("+447700900302", VIEWER) == "**********302"
    assert mask_phone("+447700900302", PII) == "+447700900302"
