"""Send markers the SMPP gateway wrote before the channel runtime, as the runtime reads them,
and unmatched-receipt events of the SMPP gateway (no servers needed)."""

from __future__ import annotations

import time

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from gateways.core import markers as m
from gateways.core.outcome import from_marker
from gateways.smpp import events
from gateways.smpp.outcomes import ABANDONED_DESCRIPTION, legacy_marker

K = e


def read(text: str) -> dict:  # type: ignore[type-arg]
    out = m.decode(text.encode(), legacy_marker)
    assert out is not None
    return out


def test_held_and_written_markers_name_their_holder_and_age() -> None:
    now = time.time()
    held = read(f"held:vm-12-ab:cd:{now - 30:.3f}")
    assert (held["s"], held["o"]) == (m.HELD, "vm-12-ab:cd")  # the time is the last field
    assert 29 < now - held["t"] < 31
    written = read(f"written:vm-1-x:{now:.3f}")
    assert (written["s"], written["o"]) == (m.WRITTEN, "vm-1-x")
    legacy = read(f"pending:{now - 5:.3f}")  # an even older version's, read as written
    assert legacy["s"] == m.SENDING and "o" not in legacy and 4 < now - legacy["t"] < 6
    assert read(f"released:{now:.3f}")["s"] == m.DEFERRED  # nothing written: claimed again


def test_recorded_outcomes_are_read_back_as_the_runtimes() -> None:
    ok = read("ok:uk|39F99DD5,39F99DD6")
    assert ok["s"] == m.SUBMITTED
    o = from_marker(ok)
    assert (o.kind, o.provider_id, o.route, o.parts, o.extra) == (
        K.MESSAGE_EVENT_KIND_SUBMITTED, "39F99DD5", "uk", 2, "39F99DD5,39F99DD6")
    refused = from_marker(read("failed:0x0000000B"))
    assert (refused.kind, refused.code, refused.category) == (
        K.MESSAGE_EVENT_KIND_FAILED, "0x0000000B", c.FAILURE_CATEGORY_INVALID_ADDRESS)
    assert refused.description.startswith("ESME_RINVDSTADR")
    timeout = from_marker(read("unknown:timeout"))
    assert (timeout.code, timeout.category) == ("TIMEOUT", c.FAILURE_CATEGORY_UNKNOWN)
    for reason in ("abandoned", "redis_lost"):
        gone = from_marker(read(f"unknown:{reason}"))
        assert (gone.code, gone.description) == ("ABANDONED", ABANDONED_DESCRIPTION)
    assert read("ok:|")["s"] == "corrupt"  # no id at all: never replayed as accepted
    assert read("nonsense")["s"] == "corrupt"


def test_unmatched_receipt_readings_and_a_key_that_deduplicates_the_smscs_copies() -> None:
    subject, ev, key = events.unmatched_receipt("uk", "0972660181", "447700900123", "DELIVRD", "000")
    assert subject == "events.receipt.unmatched" and isinstance(ev, e.UnmatchedReceipt)
    # as sent, normalised, and read as hex: the submit_sm_resp said 39F99DD5
    assert {"0972660181", "972660181", "39f99dd5"} <= set(ev.provider_ids)
    assert (ev.source_address, ev.route, ev.stat, ev.error_code, ev.parts) == (
        "447700900123", "uk", "DELIVRD", "000", 0)
    again = events.unmatched_receipt("uk", "972660181", "+447700900123", "DELIVRD", "000")
    assert again[2] == key and again[1].event_id == ev.event_id  # same receipt, other spelling
    other_number = events.unmatched_receipt("uk", "0972660181", "447700900124", "DELIVRD", "000")
    other_route = events.unmatched_receipt("fr", "0972660181", "447700900123", "DELIVRD", "000")
    assert len({key, other_number[2], other_route[2]}) == 3
    hexed = events.unmatched_receipt("uk", "39f99dd5", "447700900123", "UNDELIV", "1")[1]
    assert "39F99DD5" in hexed.provider_ids  # as SMSCs print it in submit_sm_resp
