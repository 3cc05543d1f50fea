"""Validation of one contact row (UpsertContacts and ImportContacts alike): addresses are
normalised through the channel registry; every other value is checked at the boundary."""

from __future__ import annotations

from herald.v1 import recipients_pb2 as pb

from services.recipients import boundary
from services.recipients.normalize import BadAddress, normalise_email, normalise_phone
from services.recipients.store import ContactRow
from shared.validate import uuid_text

MAX_CATEGORY_IDS = 1000
NO_ADDRESS = "a contact needs a phone, an email or an external_id"


def check_contact(ct: pb.Contact, index: int, region: str) -> ContactRow | list[tuple[str, str]]:
    """A normalised row, or (field, reason) of every bad field ("contact" when the row has
    neither phone, email nor external_id)."""
    errors: list[tuple[str, str]] = []
    phone = email = None
    raw_phone, raw_email = ct.phone.strip(), ct.email.strip()
    if raw_phone:
        try:
            phone = normalise_phone(ct.phone, region)
        except BadAddress as exc:
            errors.append(("phone", str(exc)))
    if raw_email:
        try:
            email = normalise_email(ct.email)
        except BadAddress as exc:
            errors.append(("email", str(exc)))
    external_id = ct.external_id.strip() or None
    if not (raw_phone or raw_email or external_id):
        errors.append(("contact", NO_ADDRESS))
    # The checks below call boundary's only for a value that fails them (the same reasons):
    # most rows pass, and their cost counted for every row of an import.
    for name in ("external_id", "first_name", "last_name"):
        value = getattr(ct, name)
        if len(value) > boundary.MAX_TEXT or "\x00" in value:
            errors.append((name, boundary.text(value, boundary.MAX_TEXT) or ""))
    fields = dict(ct.fields) if ct.fields else {}
    if fields and (bad := boundary.fields(fields)):
        errors.append(("fields", bad))
    language = ct.language.strip()
    if language and (bad := boundary.language(language)):
        errors.append(("language", bad))
    cats = ct.category_ids
    if len(cats) > MAX_CATEGORY_IDS:
        errors.append(("category_ids", f"at most {MAX_CATEGORY_IDS}"))
    elif cats:
        malformed = [x for x in cats if uuid_text(x) is not None]
        if malformed:
            errors.append(("category_ids", f"unknown category {malformed[0][:100]!r}"))
    if errors:
        return errors
    return ContactRow(index=index, external_id=external_id, phone=phone, email=email,
                      first_name=ct.first_name.strip(), last_name=ct.last_name.strip(),
                      fields=fields, category_ids=list(dict.fromkeys(cats)) if cats else [],
                      language=language)


def validate_contact(ct: pb.Contact, index: int, region: str) -> ContactRow | str:
    """UpsertContacts' form: a normalised row, or the error naming the field(s) at fault."""
    row = check_contact(ct, index, region)
    if isinstance(row, ContactRow):
        return row
    # UpsertContacts has always reported a row without any address under "phone".
    return "; ".join(f"{'phone' if f == 'contact' else f}: {why}" for f, why in row)
