"""request_id semantics of AIP-155: a retry returns the first answer only when it is the same
call (method, target, body); the same request_id with anything else is refused."""

from __future__ import annotations

import hashlib

from google.protobuf.message import Message

from shared.errors import HeraldError, invalid


def fingerprint(method: str, request: Message, id_field: str = "request_id") -> str:
    """Digest of the call without its request_id: equal for a faithful retry only."""
    body = type(request)()
    body.CopyFrom(request)
    if id_field in body.DESCRIPTOR.fields_by_name:
        body.ClearField(id_field)
    data = body.SerializeToString(deterministic=True)
    return hashlib.sha256(method.encode() + b"\0" + data).hexdigest()


def mismatch(request_id: str) -> HeraldError:
    return invalid({"request_id": f"{request_id!r} was already used for another call (the "
                                  "method, target or body differ); use a new request_id"})
