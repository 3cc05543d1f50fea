"""Opaque page tokens bound to their query (AIP-158).

A token carries an offset and a digest of the query it belongs to (list, parent, filter,
order): a token from another list or another filter is refused with INVALID_ARGUMENT, as is
one that was edited (the digest covers the offset too).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

from shared.errors import invalid

MAX_OFFSET = 10_000_000  # far past any real list; keeps offsets inside every SQL integer
_KEY = b"herald-page-token-v1"  # integrity, not secrecy: a token is only ever a position


def _digest(offset: int, binding: str) -> str:
    return hmac.new(_KEY, f"{offset}\0{binding}".encode(), hashlib.sha256).hexdigest()[:16]


def binding(*parts: object) -> str:
    return "\x1f".join(str(p) for p in parts)


def encode(offset: int, bound_to: str) -> str:
    raw = json.dumps({"o": offset, "d": _digest(offset, bound_to)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(token: str, bound_to: str, field: str = "page_token") -> int:
    """Offset of a token issued for this query; 0 for an empty token."""
    if not token:
        return 0
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        obj = json.loads(raw)
        offset, digest = obj["o"], obj["d"]
        if not isinstance(offset, int) or isinstance(offset, bool) or not isinstance(digest, str):
            raise ValueError("bad token")
    except Exception as exc:
        raise invalid({field: "not a page token this service issued"}) from exc
    if not 0 <= offset <= MAX_OFFSET or not hmac.compare_digest(digest, _digest(offset, bound_to)):
        raise invalid({field: "this page token belongs to another list, filter or order"})
    return offset
