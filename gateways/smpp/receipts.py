"""Delivery receipts: SMPP 3.4 Appendix B text, the receipt TLVs, SMSC id normalisation and
what a receipt stat means for the message.

Real SMSCs disagree on the id's form between submit_sm_resp and the receipt: `39F99DD5`
in the response can come back as `0972660181` (the same number in decimal), with leading
zeros or another case. `id_keys` lists every interpretation we store a mapping under;
`normalise_id` is the single key a receipt is looked up by.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from gateways.smpp import pdu

FC = c
# The generated modules' top-level enum constants: EnumTypeWrapper attribute access
# (e.MessageEventKind.X) looks the name up on every use, ~3 µs each (measured).
K = e

# message_state TLV (SMPP 3.4 section 5.2.28) -> Appendix B stat
MESSAGE_STATES = {1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV",
                  6: "ACCEPTD", 7: "UNKNOWN", 8: "REJECTD"}
STAT_TO_STATE = {v: k for k, v in MESSAGE_STATES.items()}
_STAT_ALIASES = {"DELIVERED": "DELIVRD", "UNDELIVERABLE": "UNDELIV", "REJECTED": "REJECTD",
                 "ACCEPTED": "ACCEPTD", "EXPIRE": "EXPIRED", "DELETE": "DELETED"}

# stat -> (event kind, failure category); stats not listed are intermediate (no event).
FINAL_STATS: dict[str, tuple[int, int]] = {
    "DELIVRD": (K.MESSAGE_EVENT_KIND_DELIVERED, FC.FAILURE_CATEGORY_UNSPECIFIED),
    "UNDELIV": (K.MESSAGE_EVENT_KIND_FAILED, FC.FAILURE_CATEGORY_CARRIER_REJECTED),
    "REJECTD": (K.MESSAGE_EVENT_KIND_FAILED, FC.FAILURE_CATEGORY_CARRIER_REJECTED),
    "DELETED": (K.MESSAGE_EVENT_KIND_FAILED, FC.FAILURE_CATEGORY_CARRIER_REJECTED),
    "EXPIRED": (K.MESSAGE_EVENT_KIND_FAILED, FC.FAILURE_CATEGORY_EXPIRED),
    "UNKNOWN": (K.MESSAGE_EVENT_KIND_FAILED, FC.FAILURE_CATEGORY_UNKNOWN),
}
KNOWN_STATS = set(MESSAGE_STATES.values())

# A label counts only at the start of the text or after white space: a value is \S+ and
# may itself hold "sub:", "stat:" or "text:" (id:sub:7 is the id "sub:7", not a sub field).
_FIELD_RES = {
    "id": re.compile(r"(?<!\S)id:\s*(\S+)", re.I),
    "sub": re.compile(r"(?<!\S)sub:\s*(\S+)", re.I),
    "dlvrd": re.compile(r"(?<!\S)dlvrd:\s*(\S+)", re.I),
    "submit_date": re.compile(r"(?<!\S)submit[ _]date:\s*(\d+)", re.I),
    "done_date": re.compile(r"(?<!\S)done[ _]date:\s*(\d+)", re.I),
    "stat": re.compile(r"(?<!\S)stat:\s*([A-Za-z_]+)", re.I),
    "err": re.compile(r"(?<!\S)err:\s*(\S+)", re.I),
}
_TEXT_RE = re.compile(r"(?<!\S)text:", re.I)
_HEX = re.compile(r"[0-9a-f]+")
MAX_NUMERIC_ID_DIGITS = 20  # longer ids are opaque strings, not numbers


@dataclass(slots=True)
class Receipt:
    message_id: str  # SMSC id as the receipt gave it
    stat: str        # DELIVRD, UNDELIV, ... ("" if neither TLV nor text says)
    err: str = ""
    sub: str = ""
    dlvrd: str = ""
    submit_raw: str = ""  # 'submit date' / 'done date' as sent; parsed when read
    done_raw: str = ""
    text: str = ""
    network_error: str = ""

    @property
    def submit_date(self) -> datetime | None:
        return parse_date(self.submit_raw)

    @property
    def done_date(self) -> datetime | None:
        return parse_date(self.done_raw)

    @property
    def final(self) -> tuple[int, int] | None:
        """(event kind, failure category) for a final stat, None for intermediate ones."""
        return FINAL_STATS.get(self.stat)


def normalise_stat(stat: str) -> str:
    s = stat.strip().upper()
    return _STAT_ALIASES.get(s, s)


def parse_date(value: str) -> datetime | None:
    """YYMMDDhhmm or YYMMDDhhmmss (Appendix B); the SMSC's clock, taken as UTC."""
    # By hand: strptime was a visible share of the receipt path's CPU.
    if len(value) not in (10, 12) or not value.isascii() or not value.isdigit():
        return None
    n = [int(value[i:i + 2]) for i in range(0, len(value), 2)]
    try:
        return datetime(2000 + n[0], n[1], n[2], n[3], n[4], n[5] if len(n) > 5 else 0, tzinfo=UTC)
    except ValueError:
        return None


# The canonical Appendix-B layout in one match (most SMSCs); anything else takes the
# field-by-field path below, which gives the same result for this layout.
_CANONICAL = re.compile(
    r"id:(\S+) sub:(\S+) dlvrd:(\S+) submit date:(\d+) done date:(\d+) stat:([A-Za-z_]+) err:(\S+)"
    r"(?: text:(.*))?", re.I | re.S)
_CANONICAL_KEYS = ("id", "sub", "dlvrd", "submit_date", "done_date", "stat", "err", "text")


def parse_text(text: str) -> dict[str, str]:
    """Appendix-B fields of a receipt's short_message; keys present only when found.
    Everything after `text:` is the message excerpt, so it is never searched for fields.
    The canonical layout in one match, else field by field: both give the same result
    (tests/fuzz/test_fuzz_smpp_receipts.py checks it on arbitrary text)."""
    c = _CANONICAL.fullmatch(text)
    if c is not None:
        return {k: v for k, v in zip(_CANONICAL_KEYS, c.groups(), strict=True) if v is not None}
    return parse_fields(text)


def parse_fields(text: str) -> dict[str, str]:
    """parse_text's general path: each field by its own pattern, in any order and spacing."""
    m = _TEXT_RE.search(text)
    head, excerpt = (text[:m.start()], text[m.end():]) if m else (text, None)
    out = {k: mm.group(1) for k, rx in _FIELD_RES.items() if (mm := rx.search(head))}
    if excerpt is not None:
        out["text"] = excerpt
    return out


def parse(short_message: bytes, tlvs: dict[int, bytes]) -> Receipt | None:
    """Combine the receipt TLVs (authoritative when present) with the Appendix-B text.
    None when no SMSC message id can be found."""
    if not tlvs and short_message:
        # The usual receipt: Appendix-B text only, canonical layout (no dict in between).
        text = short_message.decode("latin-1")
        c = _CANONICAL.fullmatch(text)
        if c is not None:
            mid, sub, dlvrd, submit_raw, done_raw, stat, err, excerpt = c.groups()
            return Receipt(mid.strip(), normalise_stat(stat), err, sub, dlvrd, submit_raw,
                           done_raw, excerpt or "", "")
    fields = parse_text(short_message.decode("latin-1")) if short_message else {}
    # An id of white space only is no id (the TLV's, else the text's).
    message_id = (pdu.tlv_str(tlvs.get(pdu.TAG_RECEIPTED_MESSAGE_ID)).strip()
                  or fields.get("id", "").strip())
    if not message_id:
        return None
    state = pdu.tlv_int(tlvs.get(pdu.TAG_MESSAGE_STATE))
    stat = MESSAGE_STATES.get(state, "") if state is not None else ""
    stat = stat or normalise_stat(fields.get("stat", ""))
    network_error = ""
    raw_ne = tlvs.get(pdu.TAG_NETWORK_ERROR_CODE)
    if raw_ne and len(raw_ne) == 3:
        network_error = f"{raw_ne[0]}:{int.from_bytes(raw_ne[1:], 'big')}"
    return Receipt(
        message_id=message_id,
        stat=stat,
        err=fields.get("err", ""),
        sub=fields.get("sub", ""),
        dlvrd=fields.get("dlvrd", ""),
        submit_raw=fields.get("submit_date", ""),
        done_raw=fields.get("done_date", ""),
        text=fields.get("text", ""),
        network_error=network_error,
    )


def is_receipt(esm_class: int, tlvs: dict[int, bytes]) -> bool:
    return bool(esm_class & pdu.ESM_RECEIPT_MASK) or pdu.TAG_RECEIPTED_MESSAGE_ID in tlvs


def format_text(message_id: str, stat: str, err: str, submitted: datetime | str,
                done: datetime | str, text: str = "") -> str:
    """Appendix-B receipt text (used by the simulator and the tests); dates as datetimes
    or already formatted YYMMDDhhmm."""
    delivered = "001" if stat == "DELIVRD" else "000"
    if not isinstance(submitted, str):
        submitted = f"{submitted:%y%m%d%H%M}"
    if not isinstance(done, str):
        done = f"{done:%y%m%d%H%M}"
    return (f"id:{message_id} sub:001 dlvrd:{delivered} submit date:{submitted} "
            f"done date:{done} stat:{stat} err:{err} text:{text[:20]}")


_LEADING_ZEROS = re.compile(r"^[\s0]+")


def normalise_id(smsc_id: str) -> str:
    """Lower case, surrounding space and leading zeros removed ('0' stays '0'). Stable:
    normalising a normalised id changes nothing ('0 5' is '5', not ' 5')."""
    n = smsc_id.strip().lower().lstrip("0")
    if n[:1].isspace():  # white space between leading zeros: rare, so not on the usual path
        n = _LEADING_ZEROS.sub("", n)
    return n or "0"


def id_keys(smsc_id: str) -> list[str]:
    """The normalised id followed by its other numeric interpretations: a hex-looking id
    also as decimal, a decimal-looking one also as hex (and, being valid hex, as hex read
    to decimal). The first entry is the id itself."""
    n = normalise_id(smsc_id)
    if len(n) > MAX_NUMERIC_ID_DIGITS or not n.isascii():
        return [n]
    if n.isdigit():
        keys = [n, format(int(n), "x"), str(int(n, 16))]
    elif _HEX.fullmatch(n):
        keys = [n, str(int(n, 16))]
    else:
        return [n]
    return list(dict.fromkeys(keys))


MIN_SUFFIX_DIGITS = 7  # a national form must still share this many digits with the E.164 one


def number_digits(address: str) -> str:
    """'+44 7700 900123' / '0044...' / '447700900123' -> '447700900123'; '07700900123' ->
    '7700900123' (a national number without its trunk prefix). Not a number: ''."""
    s = address.strip()
    if s[:1] == "+":
        s = s[1:]
    digits = "".join(ch for ch in s if ch.isdigit())
    if not digits or len(digits) < len(s) - s.count(" ") - s.count("-"):
        return ""  # letters in it: an alphanumeric address
    return digits.lstrip("0")


def same_number(receipt_source: str, destination: str) -> bool:
    """Whether a receipt's source address is the number a message was sent to, whatever its
    form: E.164 with or without '+', '00' or a national trunk '0', as TON/NPI variants give
    it. The same length must be the same digits; otherwise the shorter must end the longer
    (national vs international) with at least MIN_SUFFIX_DIGITS digits. A receipt without a
    numeric source address, or a message without a destination, cannot be checked: True."""
    if destination == receipt_source or (destination[:1] == "+" and destination[1:] == receipt_source):
        return True  # the usual forms: 0.15 µs instead of 9
    a, b = number_digits(receipt_source), number_digits(destination)
    if not a or not b:
        return True
    if len(a) == len(b):
        return a == b
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return len(short) >= MIN_SUFFIX_DIGITS and long_.endswith(short)
