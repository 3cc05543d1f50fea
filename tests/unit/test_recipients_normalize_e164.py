"""The recipients' E.164 reading of phone numbers (services.recipients.normalize) against
libphonenumber's parser as shared.channels.sms uses it: the same number or the same reason,
for every country code, the numbers libphonenumber gives as examples, random digits and the
forms the fast reading must leave to the parser."""

from __future__ import annotations

import random

import phonenumbers
import pytest

from services.recipients import normalize
from services.recipients.normalize import BadAddress, normalise_phone, parse_phone

TEST_RANGE = r"^\+44(7700900\d{3}|4000\d{6})$"


def outcome(fn: object, raw: str, region: str | None, test_numbers: str | None) -> str:
    try:
        return "ok " + fn(raw, region, test_numbers)  # type: ignore[operator]
    except BadAddress as exc:
        return "bad " + str(exc)


def same(raw: str, region: str | None = "GB", test_numbers: str | None = TEST_RANGE) -> None:
    assert outcome(normalise_phone, raw, region, test_numbers) == outcome(
        parse_phone, raw, region, test_numbers
    ), raw


def _examples() -> list[str]:
    out = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (
            phonenumbers.PhoneNumberType.MOBILE,
            phonenumbers.PhoneNumberType.FIXED_LINE,
            phonenumbers.PhoneNumberType.TOLL_FREE,
            phonenumbers.PhoneNumberType.VOIP,
        ):
            num = phonenumbers.example_number_for_type(region, kind)
            if num is not None:
                out.append(phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164))
    for cc in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        num = phonenumbers.example_number_for_non_geo_entity(cc)
        if num is not None:
            out.append(phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164))
    return out


def test_libphonenumber_examples_of_every_region() -> None:
    examples = _examples()
    assert len(examples) > 500
    for raw in examples:
        same(raw)
        same(raw, "US", "")


def test_random_digits_after_every_country_code() -> None:
    rnd = random.Random(20261201)
    codes = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
    for cc in codes:
        for _ in range(60):
            length = rnd.randint(1, 16 - len(str(cc)))
            first = rnd.choice("0123456789")
            digits = first + "".join(rnd.choice("0123456789") for _ in range(length - 1))
            same(f"+{cc}{digits}")
    for _ in range(3000):  # any prefix, known country code or not
        same("+" + "".join(rnd.choice("0123456789") for _ in range(rnd.randint(1, 17))))


def test_mutations_of_valid_numbers() -> None:
    """A valid number with a digit changed, dropped or added: a sample near every boundary of
    the metadata's length and range rules."""
    rnd = random.Random(7)
    for raw in _examples():
        digits = raw[1:]
        for _ in range(8):
            i = rnd.randrange(len(digits))
            d = rnd.choice("0123456789")
            for variant in (
                digits[:i] + d + digits[i + 1 :],
                digits[:i] + digits[i + 1 :],
                digits[:i] + d + digits[i:],
            ):
                same("+" + variant)


@pytest.mark.parametrize(
    "raw",
    [
        "+447700900123",
        "+444000000123",
        "+444000999999",
        "+4477009001234",
        "+44770090012",
        "+12025550143",
        "+1 202 555 0143",
        "+4407700900123",
        "+390612345678",
        "+3906123456789",
        "+5491123456789",
        "+54 9 11 2345-6789",
        "+7 912 345 67 89",
        "+79123456789",
        "+800 1234 5678",
        "+80012345678",
        "+999123456789",
        "+0123456789",
        "+",
        "+1",
        "+44",
        " +447700900123 ",
        "\u00a0+447700900123\u2003",
        "+447700900123 ext. 12",
        "+447700900123;ext=1",
        "+44770090012x",
        "+\u0664\u0664\u0667\u0667\u0660\u0660\u0669\u0660\u0660\u0661\u0662\u0663",
        "＋447700900123",
        "+4477009001234567",
        "+44770090012345678",
        "+1" + "2" * 15,
        "07700 900123",
        "tel:+447700900123",
        "+44(0)7700900123",
        "",
    ],
)
def test_edge_forms(raw: str) -> None:
    for region in ("GB", "US", "IT", "", None):
        for test_numbers in (TEST_RANGE, ""):
            same(raw, region, test_numbers)


def test_default_test_numbers_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_RECIPIENTS_TEST_NUMBERS", r"^\+444000\d{6}$")
    same("+444000123456", "GB", None)
    same("+447700900123", "GB", None)
    assert normalise_phone("+444000123456", "GB") == "+444000123456"


def test_fast_reading_is_used_for_plain_e164() -> None:
    """The equivalence above is only worth checking if plain E.164 input takes the fast way."""
    assert normalize.e164_parts("+447700900123") == (44, 7700900123)
    assert normalize.e164_parts("+12025550143") == (1, 2025550143)
    assert normalize.e164_parts("+4407700900123") is None  # national prefix: the parser decides
    assert normalize.e164_parts("+12025550143 ") is None  # stripped by the caller first
