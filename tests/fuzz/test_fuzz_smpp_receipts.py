"""Fuzzing the receipt parser (gateways/smpp/receipts.py).

The equivalence between the fast and the general path: the canonical Appendix-B layout is
parsed in one regex match (`parse_text`, and `parse` when a receipt has no TLV), anything
else field by field (`parse_fields`, and `parse` with TLVs). A TLV the parser does not read
(a vendor tag) changes nothing, so `parse(raw, {})` must equal `parse(raw, {vendor: ...})`,
and `parse_text(t)` must equal `parse_fields(t)`, for every text.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import example, given
from hypothesis import strategies as st

from gateways.smpp import pdu, receipts

VENDOR_TLV = {0x1403: b"vendor"}  # a tag receipts.parse never reads: forces the general path

LABELS = ["id:", "sub:", "dlvrd:", "submit date:", "done date:", "stat:", "err:", "text:",
          "submit_date:", "ID:", "Stat:", "TEXT:", " ", "  ", "\n", "\t", "0", "DELIVRD"]
# Latin-1 without white space (str.isspace: also \x1c-\x1f, \x85, \xa0): one \S+ value.
value_chars = st.characters(max_codepoint=0xFF).filter(lambda ch: not ch.isspace())
values = st.text(value_chars, min_size=1, max_size=12)
# Text made of receipt labels and values in any order: reaches both paths and their edges.
receiptish = st.lists(st.sampled_from(LABELS) | values, max_size=20).map("".join)
latin1 = st.text(st.characters(max_codepoint=0xFF), max_size=200)


def date_text(d: datetime, seconds: bool) -> str:
    return f"{d:%y%m%d%H%M%S}" if seconds else f"{d:%y%m%d%H%M}"


dates = st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31))


@st.composite
def canonical(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    fields = {
        "id": draw(values), "sub": draw(values), "dlvrd": draw(values),
        "submit_date": date_text(draw(dates), draw(st.booleans())),
        "done_date": date_text(draw(dates), draw(st.booleans())),
        "stat": draw(st.sampled_from(sorted(receipts.KNOWN_STATS) + ["delivrd", "Undeliv", "DELIVERED"])),
        "err": draw(values),
    }
    text = (f"id:{fields['id']} sub:{fields['sub']} dlvrd:{fields['dlvrd']} "
            f"submit date:{fields['submit_date']} done date:{fields['done_date']} "
            f"stat:{fields['stat']} err:{fields['err']}")
    if draw(st.booleans()):
        fields["text"] = draw(latin1)
        text += " text:" + fields["text"]
    return text, fields


def _check_receipt(r: receipts.Receipt | None) -> None:
    if r is None:
        return
    assert r.message_id and r.message_id == r.message_id.strip()
    r.submit_date, r.done_date, r.final  # noqa: B018 -- properties must not raise


@given(st.binary(max_size=300), st.dictionaries(
    st.sampled_from([pdu.TAG_RECEIPTED_MESSAGE_ID, pdu.TAG_MESSAGE_STATE,
                     pdu.TAG_NETWORK_ERROR_CODE, 0x1403]), st.binary(max_size=12), max_size=4))
@example(b"", {pdu.TAG_RECEIPTED_MESSAGE_ID: b" \0"})  # regression: Receipt with an empty id
def test_arbitrary_receipts_never_raise(short_message: bytes, tlvs: dict[int, bytes]) -> None:
    _check_receipt(receipts.parse(short_message, tlvs))
    receipts.is_receipt(short_message[0] if short_message else 0, tlvs)


@given(st.text(max_size=300) | receiptish)
def test_arbitrary_text_never_raises(text: str) -> None:
    receipts.parse_text(text)
    receipts.normalise_stat(text)
    receipts.id_keys(text)
    receipts.same_number(text, text[::-1])
    receipts.number_digits(text)


@given(st.text(max_size=14) | st.text("0123456789²³¹٣", min_size=10, max_size=12))
@example("²²²²²²²²²²")  # regression: str.isdigit() accepts superscripts, int() does not
def test_parse_date_is_a_datetime_or_none(value: str) -> None:
    d = receipts.parse_date(value)
    assert d is None or d.tzinfo is UTC


@given(canonical())
@example(("id:sub:zz sub:001 dlvrd:001 submit date:2611231642 done date:2611231643 stat:DELIVRD err:0",
          {"id": "sub:zz", "sub": "001", "dlvrd": "001", "submit_date": "2611231642",
           "done_date": "2611231643", "stat": "DELIVRD", "err": "0"}))
@example(("id:text:1 sub:001 dlvrd:001 submit date:2611231642 done date:2611231643 stat:DELIVRD err:0",
          {"id": "text:1", "sub": "001", "dlvrd": "001", "submit_date": "2611231642",
           "done_date": "2611231643", "stat": "DELIVRD", "err": "0"}))
def test_canonical_receipts_parse_to_what_was_put_in(case: tuple[str, dict[str, str]]) -> None:
    text, fields = case
    raw = text.encode("latin-1")
    for r in (receipts.parse(raw, {}), receipts.parse(raw, VENDOR_TLV)):
        assert r is not None
        assert (r.message_id, r.sub, r.dlvrd, r.err) == (fields["id"], fields["sub"], fields["dlvrd"], fields["err"])
        assert (r.submit_raw, r.done_raw) == (fields["submit_date"], fields["done_date"])
        assert r.stat == receipts.normalise_stat(fields["stat"])
        assert r.text == fields.get("text", "")
        assert r.submit_date is not None and r.done_date is not None
    assert receipts.parse_text(text) == receipts.parse_fields(text) == fields


@given(values, st.sampled_from(sorted(receipts.KNOWN_STATS)), values, dates, dates, latin1)
def test_format_text_round_trips(message_id: str, stat: str, err: str, submitted: datetime,
                                 done: datetime, excerpt: str) -> None:
    text = receipts.format_text(message_id, stat, err, submitted, done, excerpt)
    r = receipts.parse(text.encode("latin-1"), {})
    assert r is not None
    assert (r.message_id, r.stat, r.err, r.text) == (message_id, stat, err, excerpt[:20])
    assert r.submit_date == submitted.replace(second=0, microsecond=0, tzinfo=UTC)


@given(st.one_of(latin1, receiptish, canonical().map(lambda c: c[0])))
@example("id:1 sub:stat:FOO dlvrd:001 submit date:2611231642 done date:2611231643 stat:DELIVRD err:0")
@example("id:1 sub:text:x dlvrd:001 submit date:2611231642 done date:2611231643 stat:DELIVRD err:0")
def test_fast_path_equals_general_path(text: str) -> None:
    """Before the fix, a label inside another field's value (sub:stat:FOO, sub:text:x) was
    taken as a field by the general path only, so the same receipt parsed differently
    depending on whether it carried a TLV."""
    assert receipts.parse_text(text) == receipts.parse_fields(text)
    raw = text.encode("latin-1")
    assert receipts.parse(raw, {}) == receipts.parse(raw, VENDOR_TLV)


@given(st.text(max_size=40) | st.from_regex(r"0*[0-9A-Fa-f]{1,24}", fullmatch=True))
@example("0 5")  # regression: normalised to ' 5', which normalised again to '5'
@example("0 0\x855")
def test_id_normalisation_is_stable(smsc_id: str) -> None:
    n = receipts.normalise_id(smsc_id)
    assert receipts.normalise_id(n) == n
    keys = receipts.id_keys(smsc_id)
    assert keys[0] == n and len(keys) == len(set(keys))
