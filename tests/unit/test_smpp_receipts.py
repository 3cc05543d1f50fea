from datetime import UTC, datetime

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from gateways.smpp import pdu, receipts

K = e.MessageEventKind


def test_appendix_b_text_with_10_digit_dates() -> None:
    text = (b"id:39F99DD5 sub:001 dlvrd:001 submit date:2611231642 done date:2611231643 "
            b"stat:DELIVRD err:000 text:Your parcel arrives")
    r = receipts.parse(text, {})
    assert r is not None
    assert (r.message_id, r.stat, r.err, r.sub, r.dlvrd) == ("39F99DD5", "DELIVRD", "000", "001", "001")
    assert r.submit_date == datetime(2026, 11, 23, 16, 42, tzinfo=UTC)
    assert r.done_date == datetime(2026, 11, 23, 16, 43, tzinfo=UTC)
    assert r.text == "Your parcel arrives"
    assert r.final == (K.MESSAGE_EVENT_KIND_DELIVERED, c.FAILURE_CATEGORY_UNSPECIFIED)


def test_appendix_b_text_with_12_digit_dates_and_odd_case() -> None:
    text = (b"ID:0972660181 SUB:001 DLVRD:000 Submit Date:261123164205 Done Date:261123164359 "
            b"Stat:undeliv Err:034 Text:id:fake stat:DELIVRD")
    r = receipts.parse(text, {})
    assert r is not None
    assert r.message_id == "0972660181"
    assert r.stat == "UNDELIV"  # the excerpt after text: never counts
    assert r.err == "034"
    assert r.done_date == datetime(2026, 11, 23, 16, 43, 59, tzinfo=UTC)
    assert r.text == "id:fake stat:DELIVRD"
    assert r.final == (K.MESSAGE_EVENT_KIND_FAILED, c.FAILURE_CATEGORY_CARRIER_REJECTED)


def test_missing_optional_fields_and_bad_dates() -> None:
    r = receipts.parse(b"id:abc stat:EXPIRED submit date:99 done date:2613991200", {})
    assert r is not None
    assert r.stat == "EXPIRED" and r.err == "" and r.submit_date is None and r.done_date is None
    assert r.final == (K.MESSAGE_EVENT_KIND_FAILED, c.FAILURE_CATEGORY_EXPIRED)


def test_tlvs_win_over_text_and_survive_a_missing_nul() -> None:
    text = b"id:1 sub:001 dlvrd:000 submit date:2611231642 done date:2611231643 stat:ENROUTE err:000"
    tlvs = {pdu.TAG_RECEIPTED_MESSAGE_ID: b"39F99DD5", pdu.TAG_MESSAGE_STATE: b"\x02",
            pdu.TAG_NETWORK_ERROR_CODE: b"\x03\x00\x22"}
    r = receipts.parse(text, tlvs)
    assert r is not None
    assert (r.message_id, r.stat, r.network_error) == ("39F99DD5", "DELIVRD", "3:34")


def test_intermediate_and_unparseable_receipts() -> None:
    r = receipts.parse(b"id:5 stat:ENROUTE", {})
    assert r is not None and r.final is None
    assert receipts.parse(b"hello, this is an MO", {}) is None
    assert receipts.parse(b"", {}) is None
    assert receipts.normalise_stat("delivered") == "DELIVRD"
    assert receipts.normalise_stat("REJECTED") == "REJECTD"


def test_receipt_detection() -> None:
    assert receipts.is_receipt(0x04, {})
    assert receipts.is_receipt(0x08, {})
    assert receipts.is_receipt(0x00, {pdu.TAG_RECEIPTED_MESSAGE_ID: b"1\0"})
    assert not receipts.is_receipt(0x00, {})
    assert not receipts.is_receipt(0x40, {})  # UDHI only: a concatenated MO


def test_normalise_id() -> None:
    assert receipts.normalise_id("39F99DD5") == "39f99dd5"
    assert receipts.normalise_id(" 0972660181 ") == "972660181"
    assert receipts.normalise_id("000") == "0"
    assert receipts.normalise_id("0a-B") == "a-b"


def test_id_keys_cover_hex_and_decimal_forms() -> None:
    # submit_sm_resp says 39F99DD5, the receipt 0972660181: the same number.
    keys = receipts.id_keys("39F99DD5")
    assert keys == ["39f99dd5", "972660181"]
    assert receipts.normalise_id("0972660181") in keys
    # A decimal id: its hex form, and (being valid hex too) its hex-read decimal form.
    assert receipts.id_keys("0972660181") == ["972660181", "39f99dd5", str(int("972660181", 16))]
    assert receipts.normalise_id("39F99DD5") in receipts.id_keys("0972660181")
    # Opaque ids stay as they are.
    assert receipts.id_keys("msg-7f3a/1") == ["msg-7f3a/1"]
    assert receipts.id_keys("f" * 40) == ["f" * 40]


def test_format_text_round_trips() -> None:
    when = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    text = receipts.format_text("0000ABCD", "UNDELIV", "001", when, when, "hello there, this is long")
    assert text == ("id:0000ABCD sub:001 dlvrd:000 submit date:2601020304 done date:2601020304 "
                    "stat:UNDELIV err:001 text:hello there, this is")
    r = receipts.parse(text.encode(), {})
    assert r is not None and (r.message_id, r.stat, r.submit_date) == ("0000ABCD", "UNDELIV", when)


def test_canonical_fast_path_matches_field_by_field_parsing() -> None:
    from datetime import UTC, datetime

    def by_field(text: str) -> dict[str, str]:
        m = receipts._TEXT_RE.search(text)  # noqa: SLF001
        head, excerpt = (text[:m.start()], text[m.end():]) if m else (text, None)
        out = {k: mm.group(1) for k, rx in receipts._FIELD_RES.items() if (mm := rx.search(head))}  # noqa: SLF001
        if excerpt is not None:
            out["text"] = excerpt
        return out

    now = datetime(2024, 1, 2, 3, 4, tzinfo=UTC)
    samples = [
        receipts.format_text("0972660181", "DELIVRD", "000", now, now, "Your code is 12"),
        receipts.format_text("39F99DD5", "UNDELIV", "001", now, now, ""),
        "id:1 sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 stat:DELIVRD err:000",
        "ID:1 SUB:001 DLVRD:001 SUBMIT DATE:2401011200 DONE DATE:2401011201 STAT:DELIVRD ERR:000 TEXT:stat:x",
        "id:1 sub:001 dlvrd:001 submit date:240101120000 done date:240101120100 stat:EXPIRED err:0 text:a\nb",
    ]
    for text in samples:
        assert receipts._CANONICAL.fullmatch(text), text  # noqa: SLF001
        assert receipts.parse_text(text) == by_field(text)
        # parse() without TLVs takes a shortcut; an unknown TLV forces the general path
        raw = text.encode("latin-1")
        assert receipts.parse(raw, {}) == receipts.parse(raw, {0x1403: b"vendor"}), text


def test_event_id_is_uuid5_of_the_key() -> None:
    import uuid

    from gateways.smpp import events
    for key in ("m-1:submitted:1", "m-2:dlr:3", "é" * 40, ""):
        assert events.event_id(key) == str(uuid.uuid5(events._NAMESPACE, key))  # noqa: SLF001


def test_mapping_encoding_round_trips_and_reads_older_json() -> None:
    import json

    from gateways.smpp.store import Mapping

    m = Mapping("m-1", "c-1", "ws", 2, "1a2b", "+447700900123", "B", 2, 3, "uk", "1a2a",
                1795460000.25, "HERALD")
    assert Mapping.loads(m.dumps()) == m
    # written by an earlier version (JSON), with a field this version no longer knows
    legacy = json.dumps({**{k: getattr(m, k) for k in m.__dataclass_fields__}, "old": 1})
    assert Mapping.loads(legacy.encode()) == m
    # a value holding the separator falls back to JSON and still round-trips
    odd = Mapping("m\x1f2", "c", "ws", 1, "9", variant="x\x1fy")
    assert odd.dumps().startswith(b"{") and Mapping.loads(odd.dumps()) == odd
