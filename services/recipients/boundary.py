"""Checks at the RecipientService API boundary: every bad input becomes INVALID_ARGUMENT
naming its field (never an error from deeper down, e.g. a NUL that PostgreSQL refuses)."""

from __future__ import annotations

import re

from google.protobuf.message import Message
from herald.v1 import common_pb2 as c

from shared import auth, channels, idempotency, pagetoken, validate
from shared.errors import invalid

DEFAULT_PAGE = 100
WRITERS = ("operator", "service")  # roles that write contacts, categories, suppressions
MAX_WORKSPACE = 64  # the workspace_id columns
# Filter values: "SMS" or "CHANNEL_SMS" for every registered channel.
CHANNELS = {k: s.channel for s in channels.specs()
            for k in (s.name.upper(), c.Channel.Name(s.channel))}
_FILTER = re.compile(r'\s*(\w+)\s*=\s*"?([^"\s]*)"?\s*')


def text(value: str, limit: int) -> str | None:
    """Violation of a free-text value stored in SQL, or None."""
    if "\x00" in value:
        return "must not contain NUL characters"
    return validate.length(value, limit)


def require(violations: dict[str, str | None]) -> None:
    bad = {k: v for k, v in violations.items() if v}
    if bad:
        raise invalid(bad)


def principal() -> auth.Principal:
    p = auth.current()
    if len(p.workspace) > MAX_WORKSPACE or "\x00" in p.workspace:
        raise invalid({auth.WORKSPACE_HEADER: f"a workspace id has at most {MAX_WORKSPACE} "
                                              "characters"})
    return p


def request_id(method: str, request: Message) -> str:
    """Checks request_id; returns the call's fingerprint (AIP-155 reuse detection)."""
    rid: str = request.request_id  # type: ignore[attr-defined]
    require({"request_id": text(rid, validate.MAX_REQUEST_ID)})
    return idempotency.fingerprint(method, request)


def channel(value: int, field: str = "channel") -> int:
    bad = validate.enum_value(c.Channel, value)
    if bad is None and not channels.known(value):
        bad = "required: " + " or ".join(c.Channel.Name(s.channel) for s in channels.specs())
    require({field: bad})
    return value


def page_size(requested: int) -> int:
    """AIP-158: 0 = the default; negative is refused; larger than the maximum is capped."""
    if requested < 0:
        raise invalid({"page_size": "must not be negative"})
    return min(requested or DEFAULT_PAGE, validate.MAX_PAGE_SIZE)


def parse_filter(value: str, allowed: str, example: str) -> str | None:
    """One `name=value` term (AIP-160 subset); returns the value or None if no filter."""
    if not value.strip():
        return None
    m = _FILTER.fullmatch(value) if len(value) <= 1000 else None
    if m is None or m.group(1) != allowed or not m.group(2):
        raise invalid({"filter": f"supported filter: {example}"})
    return m.group(2)


def channel_filter(value: str) -> int | None:
    names = [s.name.upper() for s in channels.specs()]
    got = parse_filter(value, "channel", " or ".join(f"channel={n}" for n in names))
    if got is None:
        return None
    ch = CHANNELS.get(got.upper())
    if ch is None:
        raise invalid({"filter": "channel must be " + " or ".join(names)})
    return ch


def page_offset(token: str, method: str, workspace: str, *query: object) -> int:
    """Offset of a page token issued for this very list (method, workspace, filter, order)."""
    return pagetoken.decode(token, pagetoken.binding(method, workspace, *query))


def next_token(more: bool, offset: int, size: int, method: str, workspace: str,
               *query: object) -> str:
    if not more or offset + size > pagetoken.MAX_OFFSET:
        return ""
    return pagetoken.encode(offset + size, pagetoken.binding(method, workspace, *query))


MAX_TEXT = 200  # names, external ids
MAX_FIELDS = 100  # custom fields per contact
MAX_FIELD_NAME = 128  # the contact_field_names column
MAX_FIELD_VALUE = 2000
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8})*")
MAX_LANGUAGE = 35


def fields(values: dict[str, str] | object) -> str | None:
    """Violation of a custom-field map, or None."""
    items = dict(values)  # type: ignore[call-overload]
    if len(items) > MAX_FIELDS:
        return f"more than {MAX_FIELDS} custom fields"
    for k, v in items.items():
        if not k.strip():
            return "a custom field needs a name"
        if len(k) > MAX_FIELD_NAME or "\x00" in k:
            return f"field names have at most {MAX_FIELD_NAME} characters and no NUL"
        if len(v) > MAX_FIELD_VALUE or "\x00" in v:
            return f"field {k!r}: values have at most {MAX_FIELD_VALUE} characters and no NUL"
    return None


def language(value: str) -> str | None:
    """Violation of a language tag (BCP 47 shape, e.g. "en", "fr-CA"), or None."""
    if value and (len(value) > MAX_LANGUAGE or not _LANGUAGE.fullmatch(value)):
        return "a language tag such as en or fr-CA"
    return None
