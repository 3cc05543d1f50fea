"""Checks at the API boundary that every service shares: each returns the violation text
(or None) so callers can collect all bad fields into one INVALID_ARGUMENT."""

from __future__ import annotations

import math
import uuid
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

# google.protobuf.Timestamp's documented range: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59Z.
TS_MIN_SECONDS = -62135596800
TS_MAX_SECONDS = 253402300799
MAX_REQUEST_ID = 128
MAX_NAME = 200
MAX_PAGE_SIZE = 1000


def uuid_text(value: str) -> str | None:
    """None when value is a UUID in canonical text form."""
    try:
        parsed = uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return "must be a UUID"
    if str(parsed) != value.lower():
        return "must be a UUID in canonical form"
    return None


def timestamp(ts: Timestamp) -> str | None:
    if not TS_MIN_SECONDS <= ts.seconds <= TS_MAX_SECONDS or not 0 <= ts.nanos <= 999_999_999:
        return "timestamp out of range (0001-01-01 .. 9999-12-31)"
    if ts.seconds < 0:
        return "timestamp before 1970 is not accepted"
    return None


def finite(value: float) -> str | None:
    return None if math.isfinite(value) else "must be a finite number"


def length(value: str, limit: int) -> str | None:
    return None if len(value) <= limit else f"at most {limit} characters"


def request_id(value: str) -> str | None:
    return length(value, MAX_REQUEST_ID)


def enum_value(enum: object, value: int) -> str | None:
    """Proto3 enums are open: an unknown number decodes fine and must be refused here."""
    try:
        enum.Name(value)  # type: ignore[attr-defined]
    except ValueError:
        return f"unknown value {value}"
    return None


def in_past(at: datetime, now: datetime) -> bool:
    return at < now
