"""ImportContacts' row validation (contact_check.check_contact and the workers'
validate_chunk) gives, row by row, what the boundary checks it calls only for failing values
would give for every value: the same fields in the same order with the same reasons, and
the same normalised row."""

from __future__ import annotations

import pytest
from herald.v1 import recipients_pb2 as pb

from services.recipients import boundary
from services.recipients.contact_check import MAX_CATEGORY_IDS, NO_ADDRESS, check_contact
from services.recipients.import_validate import Good, validate_chunk
from services.recipients.normalize import BadAddress, normalise_email, parse_phone
from services.recipients.store import ContactRow
from shared.masking import mask_text
from shared.validate import uuid_text

CAT = "5f0c6f38-3c59-4c41-9a51-3d1c2a6d7e10"
CAT2 = "6a1d7049-4d5a-4d52-8b62-4e2d3b7e8f21"


def reference(ct: pb.Contact, index: int, region: str) -> ContactRow | list[tuple[str, str]]:
    """Every check applied to every value, with libphonenumber's parser for phones."""
    errors: list[tuple[str, str]] = []
    found: dict[str, str | None] = {"phone": None, "email": None}
    readers = {"phone": lambda raw: parse_phone(raw, region), "email": normalise_email}
    for name, read in readers.items():
        if getattr(ct, name).strip():
            try:
                found[name] = read(getattr(ct, name))
            except BadAddress as exc:
                errors.append((name, str(exc)))
    phone, email = found["phone"], found["email"]
    external_id = ct.external_id.strip() or None
    if not (ct.phone.strip() or ct.email.strip() or external_id):
        errors.append(("contact", NO_ADDRESS))
    for name in ("external_id", "first_name", "last_name"):
        bad = boundary.text(getattr(ct, name), boundary.MAX_TEXT)
        if bad:
            errors.append((name, bad))
    for name, bad in (
        ("fields", boundary.fields(ct.fields)),
        ("language", boundary.language(ct.language.strip())),
    ):
        if bad:
            errors.append((name, bad))
    many = len(ct.category_ids) > MAX_CATEGORY_IDS
    malformed = [x for x in ct.category_ids if uuid_text(x) is not None]
    if many or malformed:
        errors.append(
            (
                "category_ids",
                f"at most {MAX_CATEGORY_IDS}"
                if many
                else f"unknown category {malformed[0][:100]!r}",
            )
        )
    return errors or ContactRow(
        index=index,
        external_id=external_id,
        phone=phone,
        email=email,
        first_name=ct.first_name.strip(),
        last_name=ct.last_name.strip(),
        fields=dict(ct.fields),
        category_ids=list(dict.fromkeys(ct.category_ids)),
        language=ct.language.strip(),
    )


LONG = "x" * (boundary.MAX_TEXT + 1)
ROWS = [
    pb.Contact(phone="+447700900123", first_name=" Ada ", external_id=" a-1 "),
    pb.Contact(phone="07700 900123", email="Ada@Example.COM", last_name="L", language=" fr-CA "),
    pb.Contact(email="bob@example.com", fields={"city": "Leeds", "tier": ""}),
    pb.Contact(external_id="only-id", category_ids=[CAT, CAT2, CAT]),
    pb.Contact(),
    pb.Contact(first_name="no address"),
    pb.Contact(phone="+44 12", email="not an email", language="not a tag!"),
    pb.Contact(phone="+447700900123", first_name=LONG, last_name="a\x00b", external_id=LONG),
    pb.Contact(external_id="x\x00"),
    pb.Contact(external_id="f", fields={"": "v"}),
    pb.Contact(external_id="f", fields={"k": "v\x00"}),
    pb.Contact(external_id="f", fields={f"k{i}": "v" for i in range(boundary.MAX_FIELDS + 1)}),
    pb.Contact(external_id="f", fields={"k" * (boundary.MAX_FIELD_NAME + 1): "v"}),
    pb.Contact(external_id="c", category_ids=["not-a-uuid", CAT]),
    pb.Contact(external_id="c", category_ids=[CAT.upper()]),
    pb.Contact(external_id="c", category_ids=[CAT] * (MAX_CATEGORY_IDS + 1)),
    pb.Contact(external_id="l", language="x" * 40),
    pb.Contact(external_id="l", language="   "),
    pb.Contact(phone="   ", email="  ", external_id="  "),
    pb.Contact(phone="+12025550143", external_id="us", first_name="A" * boundary.MAX_TEXT),
]


@pytest.mark.parametrize("i", range(len(ROWS)))
@pytest.mark.parametrize("region", ["GB", "US"])
def test_same_as_every_check_on_every_value(i: int, region: str) -> None:
    assert check_contact(ROWS[i], i + 2, region) == reference(ROWS[i], i + 2, region)


@pytest.mark.parametrize("pii", [True, False])
def test_chunk_rows_in_order(pii: bool) -> None:
    msg = pb.ImportContactsRequest(contacts=ROWS, lines=range(10, 10 + len(ROWS)))
    got = validate_chunk(msg.SerializeToString(), "GB", pii)
    assert [r[0] for r in got] == list(range(10, 10 + len(ROWS)))
    for line, ct, row in zip(msg.lines, ROWS, got, strict=True):
        want = reference(ct, line, "GB")
        if isinstance(want, ContactRow):
            assert isinstance(row, Good)
            assert row == Good(
                line,
                want.external_id,
                want.phone,
                want.email,
                want.first_name,
                want.last_name,
                want.fields,
                want.category_ids,
                want.language,
            )
        else:
            assert row == (line, want if pii else [(f, mask_text(why)) for f, why in want])
