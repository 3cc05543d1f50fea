"""Signed tracking tokens for open pixels, click redirects and unsubscribe links.

token = b64url(compact JSON payload) "." b64url(HMAC-SHA256(key, "herald.t1." + payload))

The payload is readable by whoever holds the link (it is the recipient's own email);
the signature makes it unforgeable. Keys rotate: the first key signs, every key verifies.
A click token binds the target URL (and its hash), so the redirect never comes from
anything the client can change.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass

OPEN = "o"
CLICK = "c"
UNSUBSCRIBE = "u"
KINDS = frozenset({OPEN, CLICK, UNSUBSCRIBE})

_DOMAIN = b"herald.t1."  # versioned, so a future format cannot be confused with this one
# Longer tokens are neither issued nor accepted (request lines of most HTTP servers stop
# near 8 KiB); a link whose token would be longer stays untracked.
MAX_TOKEN = 4096

# payload key <-> field; short keys keep links short
_KEYS = {
    "k": "kind", "m": "message_id", "c": "campaign_id", "w": "workspace_id", "v": "variant",
    "i": "link_index", "u": "url", "h": "url_hash", "a": "address", "ct": "contact_id",
}


def url_hash(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Token:
    kind: str
    message_id: str
    campaign_id: str = ""
    workspace_id: str = ""
    variant: str = ""
    link_index: int = 0
    url: str = ""
    url_hash: str = ""
    address: str = ""
    contact_id: str = ""

    def payload(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for short, name in _KEYS.items():
            value = getattr(self, name)
            if value or (name == "link_index" and self.kind == CLICK):
                out[short] = value
        return out


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_keys(raw: str) -> list[bytes]:
    keys = [k.strip().encode("utf-8") for k in raw.split(",") if k.strip()]
    if not keys:
        raise ValueError("HERALD_TRACKING_KEYS holds no key")
    return keys


class Signer:
    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("at least one tracking key is required")
        self.keys = keys

    def _mac(self, key: bytes, body: str) -> bytes:
        return hmac.digest(key, _DOMAIN + body.encode("ascii"), "sha256")

    def sign_json(self, payload_json: str) -> str:
        """Sign an already serialised payload (the compose fast path builds the JSON from
        per-template prefixes instead of a Token per link)."""
        body = _b64e(payload_json.encode("utf-8"))
        return f"{body}.{_b64e(hmac.digest(self.keys[0], _DOMAIN + body.encode('ascii'), 'sha256'))}"

    def sign(self, token: Token) -> str:
        if token.kind not in KINDS:
            raise ValueError(f"unknown token kind {token.kind!r}")
        if token.kind == CLICK and token.url and not token.url_hash:
            token = Token(**{**token.__dict__, "url_hash": url_hash(token.url)})
        body = _b64e(json.dumps(token.payload(), separators=(",", ":"), ensure_ascii=False)
                     .encode("utf-8"))
        return f"{body}.{_b64e(self._mac(self.keys[0], body))}"

    def verify(self, text: str, kind: str) -> Token | None:
        """The token if it is well formed, signed by any current key and of `kind`."""
        if not text or len(text) > MAX_TOKEN or text.count(".") != 1:
            return None
        body, sig_text = text.split(".")
        try:
            sig = _b64d(sig_text)
            body.encode("ascii")
        except (binascii.Error, ValueError):
            return None
        if not any(hmac.compare_digest(sig, self._mac(k, body)) for k in self.keys):
            return None
        try:
            raw = json.loads(_b64d(body))
            fields = {_KEYS[k]: v for k, v in raw.items() if k in _KEYS}
            token = Token(**fields)
        except (ValueError, TypeError):
            return None
        if token.kind != kind or not token.message_id:
            return None
        if kind == CLICK and (not token.url or token.url_hash != url_hash(token.url)):
            return None
        return token


# --- VERP return paths ------------------------------------------------------------------
# Local part "b-<message id>-<attempt>-<signature>", lower case (MTAs may fold case) and
# at most 64 octets (RFC 5321): a UUID message id is packed into 26 base32 characters,
# the signature is 80 bits of HMAC. Bounces name the message only through this.
_VERP_DOMAIN = b"herald.verp1."


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def _b32d(text: str) -> bytes:
    return base64.b32decode(text.upper() + "=" * (-len(text) % 8))


def _pack_id(message_id: str) -> str:
    try:
        u = uuid.UUID(message_id)
        if str(u) == message_id:
            return "u" + _b32(u.bytes)
    except ValueError:
        pass
    return "r" + _b32(message_id.encode("utf-8"))


def _unpack_id(text: str) -> str:
    if text[:1] == "u":
        return str(uuid.UUID(bytes=_b32d(text[1:])))
    if text[:1] == "r":
        return _b32d(text[1:]).decode("utf-8")
    raise ValueError("unknown id packing")


def _verp_mac(key: bytes, packed: str, attempt: int) -> str:
    return _b32(hmac.digest(key, _VERP_DOMAIN + f"{packed}-{attempt}".encode("ascii"),
                            "sha256")[:10])


def verp_local(signer: Signer, message_id: str, attempt: int) -> str:
    packed = _pack_id(message_id)
    return f"b-{packed}-{attempt}-{_verp_mac(signer.keys[0], packed, attempt)}"


def parse_verp(signer: Signer, address: str) -> tuple[str, int] | None:
    """(message_id, attempt) of a VERP address signed by any current key, else None."""
    local = address.strip().strip("<>").rpartition("@")[0].lower()
    parts = local.split("-")
    if len(parts) != 4 or parts[0] != "b" or not parts[2].isdigit():
        return None
    packed, attempt, sig = parts[1], int(parts[2]), parts[3]
    if not any(hmac.compare_digest(sig, _verp_mac(k, packed, attempt)) for k in signer.keys):
        return None
    try:
        return _unpack_id(packed), attempt
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
