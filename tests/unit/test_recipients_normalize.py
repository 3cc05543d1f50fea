"""Address normalisation and UpsertContacts row validation of the recipients service."""

from __future__ import annotations

import pytest
from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2 as pb

from services.recipients.boundary import parse_filter
from services.recipients.consumer import event_address
from services.recipients.normalize import (
    BadAddress,
    match_key,
    normalise,
    normalise_email,
    normalise_phone,
)
from services.recipients.servicer import validate_contact
from services.recipients.store import ContactRow
from shared.errors import HeraldError

CAT = "5f0c6f38-3c59-4c41-9a51-3d1c2a6d7e10"


@pytest.mark.parametrize("raw", ["+44 7700 900123", "07700 900123", "07700-900-123",
                                 "(07700) 900123", "00447700900123", "tel:+447700900123",
                                 " +447700900123 "])
def test_uk_phone_forms_become_e164(raw: str) -> None:
    assert normalise_phone(raw, "GB") == "+447700900123"


def test_region_decides_national_numbers() -> None:
    assert normalise_phone("(202) 555-0143", "US") == "+12025550143"
    assert normalise_phone("+1 202 555 0143", "GB") == "+12025550143"  # explicit prefix wins


def test_default_region_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_DEFAULT_REGION", "US")
    assert normalise_phone("202 555 0143") == "+12025550143"
    monkeypatch.delenv("HERALD_DEFAULT_REGION")
    assert normalise_phone("07700 900123") == "+447700900123"  # GB by default


@pytest.mark.parametrize("raw", ["", "   ", "12345", "+447700900", "+4477009001234", "hello",
                                 "07700 9001"])
def test_bad_phones(raw: str) -> None:
    with pytest.raises(BadAddress):
        normalise_phone(raw, "GB")


def test_fictional_range_is_a_setting() -> None:
    # Ofcom's drama range is unassigned in libphonenumber; accepted only through the setting.
    with pytest.raises(BadAddress):
        normalise_phone("+447700900123", "GB", test_numbers="")
    # 020 7946 0xxx is Ofcom's London drama range, and valid to libphonenumber.
    assert normalise_phone("+442079460123", "GB", test_numbers="") == "+442079460123"


def test_emails() -> None:
    assert normalise_email("Alice@Example.COM") == "Alice@example.com"
    assert normalise_email("  bob@example.com ") == "bob@example.com"
    for bad in ("", "bob", "bob@", "@example.com", "bob@localhost", "a b@example.com",
                "Bob <bob@example.com>"):
        with pytest.raises(BadAddress):
            normalise_email(bad)


def test_channel_dispatch_and_match_keys() -> None:
    assert normalise(c.CHANNEL_SMS, "07700 900001") == "+447700900001"
    assert normalise(c.CHANNEL_EMAIL, "X@EXAMPLE.com") == "X@example.com"
    with pytest.raises(BadAddress):
        normalise(c.CHANNEL_UNSPECIFIED, "x@example.com")
    # An unsubscribe by X@example.com also covers x@example.com.
    assert match_key(c.CHANNEL_EMAIL, "X@example.com") == "x@example.com"
    assert match_key(c.CHANNEL_SMS, "+447700900001") == "+447700900001"


def test_event_addresses_without_plus() -> None:
    assert event_address(c.CHANNEL_SMS, "447700900555") == "+447700900555"
    assert event_address(c.CHANNEL_SMS, "07700 900555") == "+447700900555"
    with pytest.raises(BadAddress):
        event_address(c.CHANNEL_SMS, "12")


def test_validate_contact_names_the_bad_fields() -> None:
    row = validate_contact(pb.Contact(phone="07700 900001", email="A@EXAMPLE.com",
                                      first_name=" Ann ", fields={"k": "v"}, language="fr-CA",
                                      category_ids=[CAT, CAT]), 3, "GB")
    assert isinstance(row, ContactRow)
    assert (row.index, row.phone, row.email, row.first_name) == (3, "+447700900001",
                                                                 "A@example.com", "Ann")
    assert row.category_ids == [CAT] and row.external_id is None and row.language == "fr-CA"
    err = validate_contact(pb.Contact(phone="123", email="nope"), 0, "GB")
    assert isinstance(err, str) and err.startswith("phone: ") and "; email: " in err
    assert validate_contact(pb.Contact(), 0, "GB") == (
        "phone: a contact needs a phone, an email or an external_id")
    assert "first_name:" in str(validate_contact(pb.Contact(email="a@example.com",
                                                            first_name="x" * 201), 0, "GB"))
    assert isinstance(validate_contact(pb.Contact(external_id="only-key"), 0, "GB"), ContactRow)


def test_validate_contact_refuses_what_sql_would_choke_on() -> None:
    """NULs, malformed category ids, over-long fields and language tags are row errors."""
    for ct, field in ((pb.Contact(external_id="a\x00b"), "external_id:"),
                      (pb.Contact(external_id="a", first_name="\x00"), "first_name:"),
                      (pb.Contact(external_id="a", category_ids=["c1"]), "category_ids:"),
                      (pb.Contact(external_id="a", fields={"k": "v" * 2001}), "fields:"),
                      (pb.Contact(external_id="a", fields={"k\x00": "v"}), "fields:"),
                      (pb.Contact(external_id="a", fields={"k" * 129: "v"}), "fields:"),
                      (pb.Contact(external_id="a", language="not a tag"), "language:"),
                      (pb.Contact(phone="1" * 5000), "phone:"),
                      (pb.Contact(email="a@" + "b" * 5000), "email:")):
        err = validate_contact(ct, 0, "GB")
        assert isinstance(err, str) and err.startswith(field), (ct, err)


def test_filters() -> None:
    assert parse_filter("", "category_id", "") is None
    assert parse_filter("category_id=abc", "category_id", "") == "abc"
    assert parse_filter(' category_id = "abc" ', "category_id", "") == "abc"
    for bad in ("category=abc", "category_id=", "category_id=a AND x=b"):
        with pytest.raises(HeraldError):
            parse_filter(bad, "category_id", "category_id=<id>")
