import struct

import pytest

from gateways.smpp import pdu
from gateways.smpp.addresses import destination_address, source_address
from gateways.smpp.rejection import JobRejected
from shared import smstext as encoding


def test_submit_sm_round_trip_keeps_sequence_and_fields() -> None:
    raw = pdu.encode("submit_sm", 4242, source_addr="HERALD", source_addr_ton=5,
                     destination_addr="447700900001", dest_addr_ton=1, dest_addr_npi=1,
                     registered_delivery=1, data_coding=8, short_message="hé".encode("utf-16-be"))
    frame = pdu.Frame.parse(raw)
    assert (frame.command_id, frame.sequence, frame.status) == (pdu.SUBMIT_SM, 4242, 0)
    assert frame.text_field("destination_addr") == "447700900001"
    assert frame.body.short_message == "hé".encode("utf-16-be")
    assert frame.body.data_coding == 8 and frame.body.registered_delivery == 1


def test_error_response_and_header_only_pdus() -> None:
    frame = pdu.Frame.parse(pdu.encode("submit_sm_resp", 7, status=pdu.ESME_RTHROTTLED))
    assert frame.is_response and frame.status == 0x58 and frame.text_field("message_id") == ""
    assert pdu.status_name(0x58) == "ESME_RTHROTTLED"
    assert pdu.status_code(0x0B) == "0x0000000B"
    assert pdu.status_name(0x401) == "0x00000401"
    assert pdu.status_description(0x401) == "vendor-specific error"
    link = pdu.Frame.parse(pdu.header_only(pdu.ENQUIRE_LINK, 9))
    assert (link.name, link.sequence) == ("enquire_link", 9)


def _deliver_sm_with_raw_tlvs(tlvs: bytes) -> bytes:
    sm = b"id:1 stat:DELIVRD"
    body = (b"\0" + b"\x01\x01" + b"447700900001\0" + b"\x05\x00" + b"HERALD\0" + b"\x04\x00\x00"
            + b"\0\0" + b"\x00\x00\x00\x00" + bytes([len(sm)]) + sm + tlvs)
    return struct.pack(">IIII", 16 + len(body), pdu.DELIVER_SM, 0, 3) + body


def test_tlvs_read_exactly_even_without_nul_and_unknown_tags() -> None:
    # receipted_message_id without its NUL (smpplib would drop the '5'), plus a vendor TLV.
    tlvs = (struct.pack(">HH", 0x001E, 8) + b"39F99DD5" + struct.pack(">HH", 0x1401, 2) + b"xy"
            + struct.pack(">HHB", 0x0427, 1, 2))
    frame = pdu.Frame.parse(_deliver_sm_with_raw_tlvs(tlvs))
    assert pdu.tlv_str(frame.tlvs[pdu.TAG_RECEIPTED_MESSAGE_ID]) == "39F99DD5"
    assert pdu.tlv_int(frame.tlvs[pdu.TAG_MESSAGE_STATE]) == 2
    assert frame.body.esm_class == 4  # smpplib still decodes the rest (unknown TLV allowed)


def test_frame_rejects_inconsistent_length() -> None:
    with pytest.raises(pdu.ProtocolError):
        pdu.Frame.parse(struct.pack(">IIII", 20, pdu.ENQUIRE_LINK, 0, 1))


def test_sequence_wraps() -> None:
    assert pdu.next_sequence(0) == 1
    assert pdu.next_sequence(0x7FFFFFFF) == 1


def test_gsm7_when_it_fits_else_ucs2() -> None:
    enc = encoding.encode_text("Hello {name} €5 @ home")
    assert enc.data_coding == encoding.DC_GSM7 and enc.esm_class == 0
    assert encoding.gsm7_decode(enc.parts[0]) == "Hello {name} €5 @ home"
    assert encoding.encode_text("x" * 160).parts == [b"x" * 160]
    uc = encoding.encode_text("Привет 👋")
    assert uc.data_coding == encoding.DC_UCS2
    assert encoding.decode(uc.parts[0], 8) == "Привет 👋"
    assert encoding.gsm7_encode("`") is None  # not in the GSM alphabet (smpplib maps it to §)


def test_too_long_fails_instead_of_truncating() -> None:
    with pytest.raises(encoding.TextTooLong, match="2 GSM-7 parts"):
        encoding.encode_text("x" * 161)
    with pytest.raises(encoding.TextTooLong, match="UCS-2"):
        encoding.encode_text("я" * 71)
    # escapes count two septets: 80 euro signs need 160 septets, 81 do not fit
    assert len(encoding.encode_text("€" * 80).parts[0]) == 160
    with pytest.raises(encoding.TextTooLong):
        encoding.encode_text("€" * 81)


def test_split_never_breaks_escape_or_surrogate_pairs() -> None:
    enc = encoding.encode_text("a" + "€" * 100, max_parts=5, reference=7)
    assert enc.esm_class == 0x40 and len(enc.parts) == 2
    assert all(p[:5] == bytes((5, 0, 3, 7, 2)) for p in enc.parts)
    assert "".join(encoding.gsm7_decode(p[6:]) for p in enc.parts) == "a" + "€" * 100
    assert all(p[-1] != encoding.ESCAPE for p in enc.parts)
    text = "x" + "😀" * 40
    uc = encoding.encode_text(text, max_parts=3)
    assert "".join(p[6:].decode("utf-16-be") for p in uc.parts) == text


def test_gsm7_fast_path_matches_the_table_walk() -> None:
    import random
    rng = random.Random(7)
    chars = [*encoding.GSM7_BASIC, *encoding.GSM7_EXTENSION, "é", "ü", "€", "中", "😀", "\r"]
    for _ in range(3000):
        text = "".join(rng.choice(chars) for _ in range(rng.randint(0, 50)))
        assert encoding.gsm7_encode(text) == encoding._gsm7_encode_slow(text), text  # noqa: SLF001


def test_gsm7_decode_fast_path_matches_the_table_walk() -> None:
    import random
    rng = random.Random(11)
    for _ in range(3000):
        data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
        assert encoding.decode(data, encoding.DC_GSM7) == encoding.gsm7_decode(data), data


def test_addresses() -> None:
    assert destination_address("+44 7700 900123") == ("447700900123", 1, 1)
    assert destination_address("00447700900123") == ("447700900123", 1, 1)
    assert destination_address("07700900123") == ("07700900123", 0, 1)
    assert destination_address("+447700900123") == ("447700900123", 1, 1)
    for bad in ("+44 7700 9x", "+４４７７００９００１２３", "+12", "+" + "1" * 21):
        with pytest.raises(JobRejected):
            destination_address(bad)
    assert source_address("HERALD") == ("HERALD", 5, 0)
    assert source_address("+447700900999") == ("447700900999", 1, 1)
    assert source_address("12345") == ("12345", 3, 0)
    with pytest.raises(JobRejected):
        source_address("A very long sender name")
