"""UUID text for event ids on the gateways' per-message paths, without UUID objects
(uuid.uuid5 + str: 5.7 µs; this: ~2 µs, measured in the email gateway)."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable

# hex digit -> the same digit with the RFC 4122 variant bits (10xx) set
_VARIANT = {f"{n:x}": f"{(n & 0x3) | 0x8:x}" for n in range(16)}


def uuid5_text(namespace: uuid.UUID) -> Callable[[str], str]:
    """A function name -> str(uuid.uuid5(namespace, name)) (SHA-1 state after the
    namespace is kept and copied per call)."""
    base = hashlib.sha1(namespace.bytes)

    def make(name: str) -> str:
        h = base.copy()
        h.update(name.encode("utf-8"))
        x = h.hexdigest()  # version 5 in digit 13, variant bits in digit 17
        return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}"

    return make


def uuid4_text() -> str:
    """str(uuid.uuid4())."""
    x = os.urandom(16).hex()
    return f"{x[:8]}-{x[8:12]}-4{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:]}"
