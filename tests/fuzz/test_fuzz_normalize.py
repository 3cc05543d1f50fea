"""Fuzzing address normalisation (services/recipients/normalize.py): any input gives an
address or BadAddress (never INTERNAL), and a normalised address normalises to itself, so
de-duplication and the suppression list see one form per address."""

from __future__ import annotations

from herald.v1 import common_pb2 as c
from hypothesis import example, given
from hypothesis import strategies as st

from services.recipients import normalize

REGIONS = st.sampled_from(["GB", "US", "DE", "FR", "IN", "BR", "JP", "", "gb", "ZZ", "001", "XX"])
TEST_NUMBERS = r"^\+447700900\d{3}$"

phone_like = st.builds(
    lambda prefix, digits, seps: prefix + "".join(d + s for d, s in zip(digits, seps, strict=False)),
    st.sampled_from(["+", "00", "0", "", "+44 ", "+1 ", "(0)", "tel:+", "+49", "+٤٤"]),
    st.text("0123456789", min_size=1, max_size=16),
    st.lists(st.sampled_from(["", "", " ", "-", ".", "/", "(", ")", "x", " ext. ", "#"]), max_size=16))
email_like = st.builds(
    lambda local, sep, domain: f"{local}{sep}{domain}",
    st.text(st.sampled_from("abcXYZ09.+_-\"\\ é☃"), max_size=20) | st.text(max_size=10),
    st.sampled_from(["@", "@@", "", "@ "]),
    st.text(st.sampled_from("abcXYZ09.-é☃"), max_size=20).map(lambda d: d + ".example") | st.text(max_size=10))


@given(st.text(max_size=60) | phone_like, REGIONS)
@example("+447700900123", "GB")
@example("07700 900123", "GB")
def test_phone_numbers_normalise_stably_or_are_refused(raw: str, region: str) -> None:
    try:
        once = normalize.normalise_phone(raw, region, TEST_NUMBERS)
    except normalize.BadAddress:
        return
    assert once.startswith("+") and once[1:].isascii() and once[1:].isdigit()
    # E.164 is the same whatever the region the second reading assumes
    assert normalize.normalise_phone(once, region, TEST_NUMBERS) == once
    assert normalize.normalise_phone(once, "US", TEST_NUMBERS) == once


@given(st.text(max_size=80) | email_like)
@example("Alice@Example.COM")
def test_emails_normalise_stably_or_are_refused(raw: str) -> None:
    try:
        once = normalize.normalise_email(raw)
    except normalize.BadAddress:
        return
    assert normalize.normalise_email(once) == once


@given(st.sampled_from([c.CHANNEL_SMS, c.CHANNEL_EMAIL, c.CHANNEL_UNSPECIFIED]), st.text(max_size=40))
def test_normalise_by_channel_never_raises_anything_else(channel: int, raw: str) -> None:
    try:
        normalize.normalise(channel, raw)
    except normalize.BadAddress:
        pass
