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
        """The smpplib PDU object (fields of type str come back as bytes)."""
        return smpp.parse_pdu(self.raw, sequence=0, allow_unknown_opt_params=True)

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
    return pos + 1 + sm_length


def parse_tlvs(data: bytes) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    pos = 0
    while pos + 4 <= len(data):
        tag, length = struct.unpack_from(">HH", data, pos)
        out[tag] = data[pos + 4:pos + 4 + length]
        pos += 4 + length
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


def next_sequence(current: int) -> int:
    """Sequence numbers run 1..0x7FFFFFFF and wrap (SMPP 3.4 section 3.2)."""
    return 1 if current >= MAX_SEQUENCE else current + 1
