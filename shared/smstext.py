"""SMS text encoding (shared: the SMPP gateway encodes with it, campaigns count parts for
validation and previews): GSM 03.38 default alphabet (data_coding 0) when every character fits,
else UCS-2 (data_coding 8); splitting into concatenated parts with a UDH.

Our own table because smpplib's has '`' where the alphabet has '§' and its splitter can cut
an escape pair (or a UTF-16 surrogate pair) in half. Septets are sent unpacked, one per
octet, as SMPP data_coding 0 expects.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

DC_GSM7 = 0x00
DC_UCS2 = 0x08

GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C,
                  "~": 0x3D, "]": 0x3E, "|": 0x40, "€": 0x65}
ESCAPE = 0x1B

_BASIC = {ch: i for i, ch in enumerate(GSM7_BASIC) if i != ESCAPE}
_BASIC_REVERSE = dict(enumerate(GSM7_BASIC))
_EXT_REVERSE = {v: k for k, v in GSM7_EXTENSION.items()}

GSM7_SINGLE = 160   # septets in one part
GSM7_PART = 153     # septets per part after a 6-octet UDH
UCS2_SINGLE = 140   # octets in one part (70 UTF-16 code units)
UCS2_PART = 134     # octets per part after a 6-octet UDH (67 code units)
MAX_PARTS = 255


class TextTooLong(ValueError):
    """The text needs more parts than allowed."""

    def __init__(self, parts: int, allowed: int, data_coding: int) -> None:
        coding = "GSM-7" if data_coding == DC_GSM7 else "UCS-2"
        super().__init__(f"text needs {parts} {coding} parts, at most {allowed} allowed")
        self.parts = parts
        self.allowed = allowed


def gsm7_encode(text: str) -> bytes | None:
    """Unpacked GSM-7 septets (escape pairs for the extension table), or None if a
    character is outside the alphabet."""
    # C-speed path (a character-class match, then str.translate): the loop below took
    # ~15 µs for a 30-character SMS, the largest single cost of preparing a job.
    if _GSM_RE.fullmatch(text) is not None:
        return text.translate(_TRANSLATE).encode("latin-1")
    return _gsm7_encode_slow(text)


def _gsm7_encode_slow(text: str) -> bytes | None:
    out = bytearray()
    for ch in text:
        code = _BASIC.get(ch)
        if code is not None:
            out.append(code)
            continue
        ext = GSM7_EXTENSION.get(ch)
        if ext is None:
            return None
        out += bytes((ESCAPE, ext))
    return bytes(out)


_TRANSLATE = {ord(ch): chr(code) for ch, code in _BASIC.items()}
_TRANSLATE.update({ord(ch): chr(ESCAPE) + chr(ext) for ch, ext in GSM7_EXTENSION.items()})
_GSM_RE = re.compile("[" + "".join(re.escape(ch) for ch in (*_BASIC, *GSM7_EXTENSION)) + "]*")


def gsm7_decode(data: bytes) -> str:
    out: list[str] = []
    escaped = False
    for b in data:
        if escaped:
            out.append(_EXT_REVERSE.get(b, " "))
            escaped = False
        elif b == ESCAPE:
            escaped = True
        else:
            out.append(_BASIC_REVERSE.get(b & 0x7F, "?"))
    return "".join(out)


# Septet -> character for text without escapes (bytes.translate + latin-1 decode, then
# str.translate): the simulator decodes every submitted text for its receipts.
_DECODE_TRANSLATE = {i: _BASIC_REVERSE.get(i & 0x7F, "?") for i in range(256)}


def decode(data: bytes, data_coding: int) -> str:
    if data_coding == DC_UCS2:
        return data.decode("utf-16-be", errors="replace")
    if data_coding == DC_GSM7:
        if ESCAPE not in data:
            return data.decode("latin-1").translate(_DECODE_TRANSLATE)
        return gsm7_decode(data)
    return data.decode("latin-1")


@dataclass(frozen=True)
class Encoded:
    data_coding: int
    parts: list[bytes]  # short_message of each submit_sm (with UDH when len > 1)

    @property
    def esm_class(self) -> int:
        return 0x40 if len(self.parts) > 1 else 0x00


def _split_gsm7(data: bytes, size: int = GSM7_PART) -> list[bytes]:
    chunks: list[bytes] = []
    start = 0
    while start < len(data):
        end = min(start + size, len(data))
        # 0x1B only ever introduces an escape pair (no character encodes to it): keep
        # the pair in one part.
        if end < len(data) and data[end - 1] == ESCAPE:
            end -= 1
        chunks.append(data[start:end])
        start = end
    return chunks


def _split_ucs2(data: bytes, size: int = UCS2_PART) -> list[bytes]:
    chunks: list[bytes] = []
    start = 0
    while start < len(data):
        end = min(start + size, len(data))
        if end < len(data) and 0xD8 <= data[end - 2] <= 0xDB:
            end -= 2  # keep a surrogate pair together
        chunks.append(data[start:end])
        start = end
    return chunks


def encode_text(text: str, max_parts: int = 1, reference: int | None = None,
                udh16: bool = False) -> Encoded:
    """Encode `text` for submit_sm; more than one part gets a concatenation UDH (IEI 0x00,
    8-bit reference, 6 octets; or IEI 0x08, 16-bit reference, 7 octets). Raises TextTooLong
    instead of ever truncating."""
    data = gsm7_encode(text)
    udh_len = 7 if udh16 else 6
    if data is not None:
        # Unpacked septets: a 7-octet UDH takes 8 septets of the 160 (152 left), 6 take 7.
        coding, single, part = DC_GSM7, GSM7_SINGLE, (152 if udh16 else GSM7_PART)
        split = _split_gsm7
    else:
        data = text.encode("utf-16-be")
        coding, single, part = DC_UCS2, UCS2_SINGLE, 140 - udh_len - (udh_len % 2)
        split = _split_ucs2
    if len(data) <= single:
        return Encoded(coding, [data])
    pieces = split(data, part)
    allowed = min(max_parts, MAX_PARTS)
    if len(pieces) > allowed:
        raise TextTooLong(len(pieces), allowed, coding)
    total = len(pieces)
    if udh16:
        ref = random.randrange(65536) if reference is None else reference & 0xFFFF
        head = bytes((6, 8, 4, ref >> 8, ref & 0xFF, total))
    else:
        ref = random.randrange(256) if reference is None else reference & 0xFF
        head = bytes((5, 0, 3, ref, total))
    return Encoded(coding, [head + bytes((i,)) + p for i, p in enumerate(pieces, 1)])


def strip_udh(short_message: bytes, esm_class: int) -> tuple[bytes, tuple[int, int, int] | None]:
    """(text octets, (reference, total, index) of a concatenation UDH or None)."""
    if not esm_class & 0x40 or not short_message:
        return short_message, None
    udhl = short_message[0]
    udh, body = short_message[1:1 + udhl], short_message[1 + udhl:]
    pos = 0
    concat = None
    while pos + 2 <= len(udh):
        iei, ln = udh[pos], udh[pos + 1]
        v = udh[pos + 2:pos + 2 + ln]
        if iei == 0x00 and ln == 3:
            concat = (v[0], v[1], v[2])
        elif iei == 0x08 and ln == 4:
            concat = ((v[0] << 8) | v[1], v[2], v[3])
        pos += 2 + ln
    return body, concat
