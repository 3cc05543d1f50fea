"""Fuzzing the SMPP decoder (gateways/smpp/pdu.py) and the framing of a byte stream into PDUs
(gateways/smpp/session_reader.py `FrameProtocol.data_received`, and `pdu.read_frame`).

The documented error of the decoder is `pdu.ProtocolError` (and, for `read_frame`,
`asyncio.IncompleteReadError` at end of stream): whatever the SMSC sends, nothing else may
come out, because the session and the gateway only catch those.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field

import pytest
import smpplib.smpp
from hypothesis import assume, example, given
from hypothesis import strategies as st

from gateways.smpp import pdu
from gateways.smpp.session_reader import FrameProtocol

COMMAND_IDS = [
    pdu.GENERIC_NACK, pdu.BIND_RECEIVER, pdu.BIND_TRANSMITTER, pdu.BIND_TRANSCEIVER,
    pdu.BIND_TRANSCEIVER | pdu.RESPONSE_BIT, pdu.BIND_TRANSMITTER | pdu.RESPONSE_BIT,
    pdu.SUBMIT_SM, pdu.SUBMIT_SM_RESP, pdu.DELIVER_SM, pdu.DELIVER_SM_RESP, pdu.UNBIND,
    pdu.UNBIND_RESP, pdu.ENQUIRE_LINK, pdu.ENQUIRE_LINK_RESP, 0x00000103, 0x00000003,
]
u32 = st.integers(0, 0xFFFFFFFF)
u8 = st.integers(0, 255)
# C-octet strings as smpplib takes them: str in, no NUL; printable ASCII as SMSCs send.
cstr = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)


def framed(command_id: int, body: bytes, status: int = 0, sequence: int = 1) -> bytes:
    return pdu.HEADER.pack(16 + len(body), command_id, status, sequence) + body


@st.composite
def plausible_pdus(draw: st.DrawFn) -> bytes:
    """A correct header (length = size) over a body of random bytes, or of random TLVs
    after a random short-message layout: reaches the body decoders, not only the header check."""
    command_id = draw(st.sampled_from(COMMAND_IDS) | u32)
    body = draw(st.binary(max_size=300) | st.builds(
        lambda head, sm, tlvs: head + bytes([len(sm) if len(sm) < 256 else 255]) + sm + tlvs,
        st.binary(max_size=40), st.binary(max_size=60),
        st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=20), st.integers(-3, 3))
                 .map(lambda t: struct.pack(">HH", t[0], max(0, len(t[1]) + t[2])) + t[1]),
                 max_size=4).map(b"".join)))
    return framed(command_id, body, draw(u32), draw(u32))


def _decode_all(raw: bytes) -> None:
    """Every decoding entry point the gateway, the session or the simulator uses."""
    pdu.resp_message_id(raw)  # never raises: the submit_sm_resp hot path
    try:
        frame = pdu.Frame.parse(raw)
    except pdu.ProtocolError:
        return
    assert (frame.command_id, frame.status, frame.sequence) == struct.unpack_from(">III", raw, 4)
    for decode in (lambda: frame.body, lambda: frame.text_field("system_id"),
                   lambda: frame.text_field("message_id"), lambda: frame.tlvs,
                   lambda: pdu.parse_sm(raw)):
        try:
            decode()
        except pdu.ProtocolError:
            pass


@given(st.binary(max_size=400) | plausible_pdus())
@example(framed(pdu.BIND_TRANSCEIVER | pdu.RESPONSE_BIT, b"\xff"))  # smpplib: struct.error
@example(framed(0x00001234, b""))  # smpplib: UnknownCommandError
@example(framed(pdu.DELIVER_SM, b"\0\0\0" + b"1\0\0\0" + b"\0" * 9 + b"\x02ab"
                + struct.pack(">HH", pdu.TAG_RECEIPTED_MESSAGE_ID, 40) + b"short"))
def test_arbitrary_bytes_raise_only_protocol_error(raw: bytes) -> None:
    _decode_all(raw)


# --- round trips of PDUs built by smpplib ------------------------------------------------

@st.composite
def short_message_fields(draw: st.DrawFn) -> dict[str, object]:
    return {
        "service_type": draw(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=5)),
        "source_addr_ton": draw(st.integers(0, 6)), "source_addr_npi": draw(st.integers(0, 18)),
        "source_addr": draw(cstr), "dest_addr_ton": draw(st.integers(0, 6)),
        "dest_addr_npi": draw(st.integers(0, 18)), "destination_addr": draw(cstr),
        "esm_class": draw(u8), "registered_delivery": draw(st.integers(0, 31)),
        "data_coding": draw(u8), "short_message": draw(st.binary(max_size=254)),
    }


# TLVs smpplib knows for both; the receipt TLVs exist on deliver_sm only (smpplib drops
# parameters a command does not define).
common_tlvs = {"sar_msg_ref_num": st.integers(0, 0xFFFF),
               "user_message_reference": st.integers(0, 0xFFFF)}
receipt_tlvs = {"receipted_message_id": st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E),
                                                min_size=1, max_size=30),
                "message_state": st.integers(1, 8)}
command_and_tlvs = st.one_of(
    st.tuples(st.just("submit_sm"), st.fixed_dictionaries({}, optional=common_tlvs)),
    st.tuples(st.just("deliver_sm"), st.fixed_dictionaries({}, optional=common_tlvs | receipt_tlvs)))


@given(command_and_tlvs, short_message_fields(), st.integers(1, pdu.MAX_SEQUENCE))
def test_smpplib_short_messages_round_trip(command_tlvs: tuple[str, dict[str, object]],
                                           fields: dict[str, object], sequence: int) -> None:
    command, tlvs = command_tlvs
    p = smpplib.smpp.make_pdu(command, sequence=sequence, **fields, **tlvs)
    p.sequence = sequence
    raw = bytes(p.generate())
    frame = pdu.Frame.parse(raw)
    assert frame.sequence == sequence and frame.status == 0
    assert frame.command_id == (pdu.SUBMIT_SM if command == "submit_sm" else pdu.DELIVER_SM)
    sm = pdu.parse_sm(raw)
    for name, value in fields.items():
        assert getattr(sm, name) == value, name
    assert sm.payload == fields["short_message"]
    if "receipted_message_id" in tlvs:
        assert pdu.tlv_str(frame.tlvs[pdu.TAG_RECEIPTED_MESSAGE_ID]) == tlvs["receipted_message_id"]
    if "message_state" in tlvs:
        assert pdu.tlv_int(sm.tlvs[pdu.TAG_MESSAGE_STATE]) == tlvs["message_state"]
    if "sar_msg_ref_num" in tlvs:
        assert pdu.tlv_int(sm.tlvs[pdu.TAG_SAR_MSG_REF_NUM]) == tlvs["sar_msg_ref_num"]
    assert (frame.body.short_message or b"") == fields["short_message"]  # smpplib: None if empty
    assert frame.text_field("destination_addr") == fields["destination_addr"]
    if not tlvs:
        # the hand-rolled hot encoder writes smpplib's bytes exactly
        own = pdu.encode_submit_sm(sequence, command_id=frame.command_id, **fields)  # type: ignore[arg-type]
        assert own == raw


@given(st.integers(1, pdu.MAX_SEQUENCE), st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=64))
def test_submit_sm_resp_round_trips(sequence: int, message_id: str) -> None:
    p = smpplib.smpp.make_pdu("submit_sm_resp", sequence=sequence, message_id=message_id)
    p.sequence = sequence
    raw = bytes(p.generate())
    assert raw == pdu.encode_submit_sm_resp(sequence, message_id)
    assert pdu.resp_message_id(raw) == message_id
    frame = pdu.Frame.parse(raw)
    assert (frame.command_id, frame.sequence, frame.text_field("message_id")) == (
        pdu.SUBMIT_SM_RESP, sequence, message_id)


@given(st.sampled_from(["bind_transceiver_resp", "bind_transmitter_resp", "bind_receiver_resp"]),
       st.integers(1, pdu.MAX_SEQUENCE), cstr.filter(lambda s: len(s) <= 15))  # SMPP: 16 with NUL
def test_bind_responses_round_trip(command: str, sequence: int, system_id: str) -> None:
    p = smpplib.smpp.make_pdu(command, sequence=sequence, system_id=system_id)
    p.sequence = sequence
    frame = pdu.Frame.parse(bytes(p.generate()))
    assert frame.sequence == sequence and frame.is_response
    assert frame.text_field("system_id") == system_id


# --- framing --------------------------------------------------------------------------

@dataclass
class FrameRecorder:
    """The two session callbacks the framing protocol calls, recorded."""

    frames: list[bytes] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)

    def on_frame(self, raw: bytes) -> None:
        assert not self.closed, "a frame was delivered after the session closed"
        self.frames.append(raw)

    def mark_closed(self, reason: str) -> None:
        self.closed.append(reason)


def feed_protocol(chunks: list[bytes]) -> FrameRecorder:
    rec = FrameRecorder()
    proto = FrameProtocol(rec)  # type: ignore[arg-type]
    for chunk in chunks:
        if rec.closed:
            break  # the session closes the transport: nothing more is read
        proto.data_received(chunk)
    return rec


def cut(stream: bytes, points: list[int]) -> list[bytes]:
    bounds = [0, *sorted({p % (len(stream) + 1) for p in points}), len(stream)]
    return [stream[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


valid_pdus = st.one_of(
    st.builds(lambda seq: pdu.header_only(pdu.ENQUIRE_LINK, seq), st.integers(1, pdu.MAX_SEQUENCE)),
    st.builds(pdu.encode_submit_sm_resp, st.integers(1, pdu.MAX_SEQUENCE), cstr),
    st.builds(pdu.encode_deliver_sm_resp, st.integers(1, pdu.MAX_SEQUENCE)),
    st.builds(lambda seq, f: pdu.encode_submit_sm(seq, command_id=pdu.DELIVER_SM, **f),
              st.integers(1, pdu.MAX_SEQUENCE), short_message_fields()),
    st.builds(lambda body: framed(pdu.DELIVER_SM, body), st.binary(max_size=2000)),
)


def read_all(chunks: list[bytes]) -> tuple[list[bytes], BaseException | None]:
    """pdu.read_frame over a StreamReader fed the chunks, then EOF."""

    async def run() -> tuple[list[bytes], BaseException | None]:
        reader = asyncio.StreamReader()
        for chunk in chunks:
            reader.feed_data(chunk)
        reader.feed_eof()
        out: list[bytes] = []
        while True:
            try:
                out.append((await pdu.read_frame(reader)).raw)
            except (asyncio.IncompleteReadError, pdu.ProtocolError) as exc:
                return out, exc

    return asyncio.run(run())


@given(st.lists(valid_pdus, min_size=1, max_size=8), st.lists(st.integers(0, 1 << 16), max_size=12))
def test_a_stream_cut_anywhere_reassembles_to_the_same_pdus(pdus: list[bytes], points: list[int]) -> None:
    stream = b"".join(pdus)
    chunks = cut(stream, points)
    rec = feed_protocol(chunks)
    assert rec.frames == pdus and not rec.closed
    frames, end = read_all(chunks)
    assert frames == pdus
    assert isinstance(end, asyncio.IncompleteReadError) and end.partial == b""


@given(st.lists(valid_pdus, min_size=1, max_size=4), st.integers(1, 1 << 16))
def test_a_stream_ending_inside_a_pdu_delivers_only_the_complete_ones(pdus: list[bytes], drop: int) -> None:
    stream = b"".join(pdus)
    truncated = stream[:-(drop % len(pdus[-1]) or 1)]
    rec = feed_protocol([truncated])
    assert rec.frames == pdus[:-1] and not rec.closed
    frames, end = read_all([truncated])
    assert frames == pdus[:-1] and isinstance(end, asyncio.IncompleteReadError)


IMPLAUSIBLE = st.one_of(st.integers(0, 15), st.integers(pdu.MAX_PDU_LENGTH + 1, 0xFFFFFFFF))


@given(st.lists(valid_pdus, max_size=3), valid_pdus, IMPLAUSIBLE, st.binary(max_size=64),
       st.lists(st.integers(0, 1 << 16), max_size=6))
@example([], pdu.header_only(pdu.ENQUIRE_LINK, 1), 0xFFFFFFFF, b"", [])
@example([], pdu.header_only(pdu.ENQUIRE_LINK, 1), 0, b"", [])
def test_implausible_length_closes_the_session_cleanly(before: list[bytes], liar: bytes, length: int,
                                                       tail: bytes, points: list[int]) -> None:
    lying = struct.pack(">I", length) + liar[4:]
    stream = b"".join(before) + lying + tail
    rec = feed_protocol(cut(stream, points))
    assert rec.frames == before
    assert len(rec.closed) == 1 and rec.closed[0].startswith("protocol error: implausible command_length")
    frames, end = read_all(cut(stream, points))
    assert frames == before and isinstance(end, pdu.ProtocolError)
    with pytest.raises(pdu.ProtocolError):
        pdu.Frame.parse(lying)


@given(valid_pdus, st.integers(16, pdu.MAX_PDU_LENGTH), st.binary(max_size=64))
def test_plausible_but_wrong_length_is_refused_by_the_decoder(raw: bytes, length: int, tail: bytes) -> None:
    """A length that lies within the plausible range cannot be told from the stream alone:
    the framer takes that many bytes (or waits for them), and whatever it hands on decodes
    or fails with ProtocolError only. The PDU itself with the wrong length is refused."""
    assume(length != len(raw))
    lying = struct.pack(">I", length) + raw[4:]
    with pytest.raises(pdu.ProtocolError):
        pdu.Frame.parse(lying)
    rec = feed_protocol([lying + tail])
    # what follows the short frame is read as the next header, which may be implausible
    assert all(reason.startswith("protocol error: ") for reason in rec.closed)
    for frame in rec.frames[:1]:
        assert len(frame) == length
        _decode_all(frame)


def _receipt_deliver_sm(tlvs: bytes, short_message: bytes = b"id:1 stat:DELIVRD") -> bytes:
    return pdu.encode_submit_sm(3, command_id=pdu.DELIVER_SM, source_addr="447700900001",
                                destination_addr="HERALD", esm_class=pdu.ESM_SMSC_RECEIPT,
                                short_message=short_message, tlvs=tlvs)


@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=20)), max_size=3),
       st.integers(0, 0xFFFF), st.binary(max_size=20), st.integers(1, 0xFFFF))
@example([], pdu.TAG_RECEIPTED_MESSAGE_ID, b"39F99DD5", 32)  # regression: read as '39F99DD5'
def test_a_tlv_running_past_the_pdu_is_refused(ok: list[tuple[int, bytes]], tag: int, value: bytes,
                                               extra: int) -> None:
    """Before the fix a TLV whose length ran past the PDU was read truncated: a
    receipted_message_id cut short would have been looked up as if it were whole."""
    length = len(value) + extra
    assume(length <= 0xFFFF)
    tlvs = b"".join(pdu.encode_tlv(t, v) for t, v in ok) + struct.pack(">HH", tag, length) + value
    raw = _receipt_deliver_sm(tlvs)
    with pytest.raises(pdu.ProtocolError):
        pdu.parse_sm(raw)
    with pytest.raises(pdu.ProtocolError):
        pdu.Frame.parse(raw).tlvs  # noqa: B018


@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=20)), max_size=3),
       st.binary(min_size=1, max_size=3))
@example([(pdu.TAG_MESSAGE_STATE, b"\x02")], b"\x04")
def test_stray_bytes_after_the_last_tlv_are_refused(ok: list[tuple[int, bytes]], stray: bytes) -> None:
    raw = _receipt_deliver_sm(b"".join(pdu.encode_tlv(t, v) for t, v in ok) + stray)
    with pytest.raises(pdu.ProtocolError):
        pdu.parse_sm(raw)


@given(st.binary(max_size=40), st.integers(1, 255))
def test_a_short_message_length_past_the_pdu_is_refused(short: bytes, extra: int) -> None:
    raw = bytearray(_receipt_deliver_sm(b"", short))
    sm_length_at = len(raw) - len(short) - 1
    assume(len(short) + extra <= 255)
    raw[sm_length_at] = len(short) + extra
    with pytest.raises(pdu.ProtocolError):
        pdu.parse_sm(bytes(raw))
    with pytest.raises(pdu.ProtocolError):
        pdu.Frame.parse(bytes(raw)).tlvs  # noqa: B018
