"""SMPP 3.4 PDUs: smpplib 2.2.4 as the body codec, our own framing and header handling.

smpplib is blocking and keeps global sequence state, so only its PDU classes are used:
`make_pdu(...).generate()` to encode (the sequence is set after construction because the
constructor ignores it) and `parse_pdu(...)` to decode bodies. Headers and TLVs that
matter for correctness are read here directly: smpplib drops the last character of a
string TLV sent without its NUL terminator, and raises on unknown TLVs.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from smpplib import command_codes, consts, smpp

# Unknown TLVs are expected from real SMSCs; smpplib would warn on every one.
logging.getLogger("smpplib").setLevel(logging.ERROR)

HEADER = struct.Struct(">IIII")
MAX_PDU_LENGTH = 64 * 1024
MAX_SEQUENCE = 0x7FFFFFFF

# command ids
GENERIC_NACK = 0x80000000
BIND_RECEIVER = 0x00000001
BIND_TRANSMITTER = 0x00000002
SUBMIT_SM = 0x00000004
SUBMIT_SM_RESP = 0x80000004
DELIVER_SM = 0x00000005
DELIVER_SM_RESP = 0x80000005
UNBIND = 0x00000006
UNBIND_RESP = 0x80000006
BIND_TRANSCEIVER = 0x00000009
ENQUIRE_LINK = 0x00000015
ENQUIRE_LINK_RESP = 0x80000015
RESPONSE_BIT = 0x80000000

# command_status values used by Herald (SMPP 3.4 section 5.1.3)
ESME_ROK = consts.SMPP_ESME_ROK
ESME_RINVMSGLEN = consts.SMPP_ESME_RINVMSGLEN
ESME_RINVCMDID = consts.SMPP_ESME_RINVCMDID
ESME_RINVBNDSTS = consts.SMPP_ESME_RINVBNDSTS
ESME_RALYBND = consts.SMPP_ESME_RALYBND
ESME_RSYSERR = consts.SMPP_ESME_RSYSERR
ESME_RINVSRCADR = consts.SMPP_ESME_RINVSRCADR
ESME_RINVDSTADR = consts.SMPP_ESME_RINVDSTADR
ESME_RBINDFAIL = consts.SMPP_ESME_RBINDFAIL
ESME_RINVPASWD = consts.SMPP_ESME_RINVPASWD
ESME_RINVSYSID = consts.SMPP_ESME_RINVSYSID
ESME_RMSGQFUL = consts.SMPP_ESME_RMSGQFUL
ESME_RTHROTTLED = consts.SMPP_ESME_RTHROTTLED
ESME_RX_T_APPN = consts.SMPP_ESME_RX_T_APPN
ESME_RX_P_APPN = consts.SMPP_ESME_RX_P_APPN

# TLV tags read directly from raw bodies
TAG_NETWORK_ERROR_CODE = 0x0423
TAG_MESSAGE_STATE = 0x0427
TAG_RECEIPTED_MESSAGE_ID = 0x001E
TAG_SAR_MSG_REF_NUM = 0x020C
TAG_MESSAGE_PAYLOAD = 0x0424

# esm_class bits
ESM_UDHI = 0x40
ESM_RECEIPT_MASK = 0x3C  # SMSC receipt 0x04, SME acks 0x08/0x10, intermediate 0x20
ESM_SMSC_RECEIPT = 0x04

_STATUS_NAMES = {
    value: name.removeprefix("SMPP_")
    for name, value in vars(consts).items()
    if name.startswith("SMPP_ESME_") and isinstance(value, int)
}


class ProtocolError(Exception):
    """The peer sent bytes that are not a valid SMPP PDU stream."""


def status_name(status: int) -> str:
    """0x58 -> 'ESME_RTHROTTLED'; unknown (vendor) codes as '0x000000FE'-style hex."""
    return _STATUS_NAMES.get(status, f"0x{status:08X}")


def status_code(status: int) -> str:
    return f"0x{status:08X}"


def status_description(status: int) -> str:
    desc = consts.DESCRIPTIONS.get(status)
    if desc and not desc.startswith("<"):
        return desc
    return "vendor-specific error" if 0x400 <= status <= 0x4FF else "unknown error"


def command_name(command_id: int) -> str:
    try:
        return str(command_codes.get_command_name(command_id))
    except Exception:
        return f"0x{command_id:08X}"


def encode(command: str, sequence: int, status: int = ESME_ROK, **fields: Any) -> bytes:
    """Encode one PDU. String fields are str, octet strings (short_message) bytes."""
    pdu = smpp.make_pdu(command, sequence=sequence, status=status, **fields)
    pdu.sequence = sequence  # make_pdu ignores sequence=
    return bytes(pdu.generate())


def header_only(command_id: int, sequence: int, status: int = ESME_ROK) -> bytes:
    """Body-less PDUs (enquire_link(_resp), unbind(_resp), generic_nack) without smpplib."""
    return HEADER.pack(16, command_id, status, sequence)


@dataclass
class Frame:
    """One received PDU: header fields plus the raw bytes, body decoded on demand."""

    command_id: int
    status: int
    sequence: int
    raw: bytes

    @classmethod
    def parse(cls, raw: bytes) -> Frame:
        if len(raw) < 16:
            raise ProtocolError(f"PDU shorter than its header ({len(raw)} bytes)")
        length, command_id, status, sequence = HEADER.unpack_from(raw)
        if length != len(raw):
            raise ProtocolError(f"command_length {length} != {len(raw)} bytes read")
        return cls(command_id, status, sequence, raw)

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & RESPONSE_BIT)

    @property
    def name(self) -> str:
        return command_name(self.command_id)

    @cached_property
    def body(self) -> Any:
        """The smpplib PDU object (fields of type str come back as bytes). ProtocolError when
        smpplib cannot decode it: it fails with struct.error, IndexError, its own
        UnknownCommandError, ... which callers (the bind, the simulator) do not expect."""
        try:
            return smpp.parse_pdu(self.raw, sequence=0, allow_unknown_opt_params=True)
        except Exception as exc:
            raise ProtocolError(f"undecodable {self.name} body: {type(exc).__name__}: {exc}") from exc

    def text_field(self, name: str) -> str:
        value = getattr(self.body, name, None)
        if value is None:
            return ""
        if isinstance(value, bytes):
            return value.rstrip(b"\0").decode("latin-1")
        return str(value)

    @cached_property
    def tlvs(self) -> dict[int, bytes]:
        """TLVs of a submit_sm / deliver_sm, values exactly as sent (NUL kept)."""
        if self.command_id not in (SUBMIT_SM, DELIVER_SM):
            return {}
        return parse_tlvs(self.raw[_sm_tlv_offset(self.raw):])


def _cstring_end(raw: bytes, pos: int) -> int:
    end = raw.find(b"\0", pos)
    if end < 0:
        raise ProtocolError("unterminated C-octet string")
    return end + 1


def _sm_tlv_offset(raw: bytes) -> int:
    """Offset of the first TLV in a submit_sm/deliver_sm (same mandatory layout)."""
    pos = 16
    pos = _cstring_end(raw, pos)      # service_type
    pos += 2                          # source_addr_ton, source_addr_npi
    pos = _cstring_end(raw, pos)      # source_addr
    pos += 2                          # dest_addr_ton, dest_addr_npi
    pos = _cstring_end(raw, pos)      # destination_addr
    pos += 3                          # esm_class, protocol_id, priority_flag
    pos = _cstring_end(raw, pos)      # schedule_delivery_time
    pos = _cstring_end(raw, pos)      # validity_period
    pos += 4                          # registered_delivery .. sm_default_msg_id
    if pos >= len(raw):
        raise ProtocolError("short_message length missing")
    sm_length = raw[pos]
    if pos + 1 + sm_length > len(raw):
        raise ProtocolError("short_message runs past the PDU")
    return pos + 1 + sm_length


def parse_tlvs(data: bytes) -> dict[int, bytes]:
    """TLVs as sent. A TLV whose length runs past the PDU, or a partial TLV header at its
    end, is a ProtocolError: a truncated value (a receipted_message_id cut short) must not
    be read as a real one."""
    out: dict[int, bytes] = {}
    pos = 0
    end = len(data)
    while pos < end:
        if pos + 4 > end:
            raise ProtocolError(f"{end - pos} stray bytes after the last TLV")
        tag, length = struct.unpack_from(">HH", data, pos)
        pos += 4
        if pos + length > end:
            raise ProtocolError(f"TLV 0x{tag:04X} of {length} bytes runs past the PDU")
        out[tag] = data[pos:pos + length]
        pos += length
    return out


def tlv_str(value: bytes | None) -> str:
    """A C-octet-string TLV value, with or without its NUL terminator."""
    if not value:
        return ""
    return value.split(b"\0", 1)[0].decode("latin-1")


def tlv_int(value: bytes | None) -> int | None:
    if not value:
        return None
    return int.from_bytes(value, "big")


async def read_frame(reader: asyncio.StreamReader) -> Frame:
    """Read one PDU framed by its 4-byte command_length. Raises IncompleteReadError at EOF."""
    head = await reader.readexactly(4)
    (length,) = struct.unpack(">I", head)
    if length < 16 or length > MAX_PDU_LENGTH:
        raise ProtocolError(f"implausible command_length {length}")
    return Frame.parse(head + await reader.readexactly(length - 4))


def split_frames(buf: bytearray, on_frame: Callable[[bytes], bool | None]) -> None:
    """Hand each whole PDU at the start of `buf` to `on_frame` and drop what was handed on;
    a partial PDU stays for the next call. Framed straight out of the receive buffer, no
    await per PDU. `on_frame` returning True stops (the connection ends there). Raises
    ProtocolError on an implausible command_length (the PDUs before it were handed on)."""
    n = len(buf)
    pos = 0
    try:
        while n - pos >= 16:
            length = int.from_bytes(buf[pos:pos + 4], "big")
            if length < 16 or length > MAX_PDU_LENGTH:
                raise ProtocolError(f"implausible command_length {length}")
            if n - pos < length:
                break
            start = pos
            pos += length
            if on_frame(bytes(buf[start:pos])):
                break
    finally:
        del buf[:pos]


def next_sequence(current: int) -> int:
    """Sequence numbers run 1..0x7FFFFFFF and wrap (SMPP 3.4 section 3.2)."""
    return 1 if current >= MAX_SEQUENCE else current + 1


# --- hand-rolled hot PDUs ---------------------------------------------------------------
# smpplib's codec does ~8.5k submit_sm encode+decode/s per core, which alone would cap the
# gateway below its 5,000 msg/s goal once NATS and Redis take their share. The few PDUs on
# the per-message path are therefore packed and parsed here with struct (measured in
# bench_smpp: see gateways/smpp/README.md); tests/unit/test_smpp_codec.py checks them byte
# for byte against smpplib, which stays the codec for everything else.
_B = struct.Struct(">B")
_SM_TAIL = struct.Struct(">BBB")


def _cstr(value: str | bytes) -> bytes:
    raw = value.encode("latin-1") if isinstance(value, str) else value
    return raw + b"\0"


def submit_sm_head(*, source_addr: str, destination_addr: str, source_addr_ton: int = 0,
                   source_addr_npi: int = 0, dest_addr_ton: int = 0, dest_addr_npi: int = 0,
                   esm_class: int = 0, protocol_id: int = 0, priority_flag: int = 0,
                   registered_delivery: int = 0, data_coding: int = 0,
                   service_type: str = "") -> bytes:
    """The body of a submit_sm up to sm_default_msg_id: the same for every part of a
    message, so it is built once per message. schedule_delivery_time/validity_period
    empty, replace_if_present 0, sm_default_msg_id 0."""
    return b"".join((
        _cstr(service_type),
        bytes((source_addr_ton, source_addr_npi)), _cstr(source_addr),
        bytes((dest_addr_ton, dest_addr_npi)), _cstr(destination_addr),
        bytes((esm_class, protocol_id, priority_flag)),
        b"\0\0",  # schedule_delivery_time, validity_period
        bytes((registered_delivery, 0, data_coding, 0)),
    ))


def submit_sm_with_head(sequence: int, head: bytes, short_message: bytes, tlvs: bytes = b"",
                        command_id: int = SUBMIT_SM) -> bytes:
    if len(short_message) > 254:
        raise ValueError("short_message longer than 254 octets (use message_payload)")
    length = 17 + len(head) + len(short_message) + len(tlvs)
    return b"".join((HEADER.pack(length, command_id, ESME_ROK, sequence), head,
                     _B.pack(len(short_message)), short_message, tlvs))


def encode_submit_sm(sequence: int, *, short_message: bytes, command_id: int = SUBMIT_SM,
                     tlvs: bytes = b"", **fields: Any) -> bytes:
    """submit_sm (or, with command_id=DELIVER_SM, a deliver_sm: same body layout); fields
    as for submit_sm_head."""
    return submit_sm_with_head(sequence, submit_sm_head(**fields), short_message, tlvs, command_id)


def encode_tlv(tag: int, value: bytes) -> bytes:
    return struct.pack(">HH", tag, len(value)) + value


def encode_submit_sm_resp(sequence: int, message_id: str, status: int = ESME_ROK) -> bytes:
    body = _cstr(message_id if status == ESME_ROK else "")  # as smpplib sends it
    return HEADER.pack(16 + len(body), SUBMIT_SM_RESP, status, sequence) + body


def encode_deliver_sm_resp(sequence: int, status: int = ESME_ROK) -> bytes:
    return HEADER.pack(17, DELIVER_SM_RESP, status, sequence) + b"\0"


def resp_message_id(raw: bytes) -> str:
    """message_id of a submit_sm_resp (empty for an error response without a body)."""
    if len(raw) <= 16:
        return ""
    end = raw.find(b"\0", 16)
    return raw[16:end if end >= 0 else len(raw)].decode("latin-1")


@dataclass(slots=True)
class ShortMessage:
    """Mandatory fields of a submit_sm / deliver_sm that Herald reads, plus raw TLVs."""

    service_type: str
    source_addr_ton: int
    source_addr_npi: int
    source_addr: str
    dest_addr_ton: int
    dest_addr_npi: int
    destination_addr: str
    esm_class: int
    registered_delivery: int
    data_coding: int
    short_message: bytes
    tlvs: dict[int, bytes]

    @property
    def payload(self) -> bytes:
        """short_message, or the message_payload TLV when short_message is empty."""
        return self.short_message or self.tlvs.get(TAG_MESSAGE_PAYLOAD, b"")


def parse_sm(raw: bytes) -> ShortMessage:
    """Decode a submit_sm / deliver_sm body at header level (no smpplib)."""
    try:
        pos = 16
        end = raw.index(b"\0", pos)
        service_type = raw[pos:end].decode("latin-1")
        ston, snpi = raw[end + 1], raw[end + 2]
        pos = end + 3
        end = raw.index(b"\0", pos)
        src = raw[pos:end].decode("latin-1")
        dton, dnpi = raw[end + 1], raw[end + 2]
        pos = end + 3
        end = raw.index(b"\0", pos)
        dst = raw[pos:end].decode("latin-1")
        esm_class = raw[end + 1]
        pos = end + 4
        pos = raw.index(b"\0", pos) + 1  # schedule_delivery_time
        pos = raw.index(b"\0", pos) + 1  # validity_period
        registered_delivery, data_coding, sm_length = raw[pos], raw[pos + 2], raw[pos + 4]
        pos += 5
    except (ValueError, IndexError) as exc:
        raise ProtocolError(f"truncated short message PDU: {exc}") from exc
    short = raw[pos:pos + sm_length]
    if len(short) != sm_length:
        raise ProtocolError("short_message runs past the PDU")
    tail = pos + sm_length
    return ShortMessage(service_type, ston, snpi, src, dton, dnpi, dst, esm_class,
                        registered_delivery, data_coding, short,
                        parse_tlvs(raw[tail:]) if tail < len(raw) else {})
