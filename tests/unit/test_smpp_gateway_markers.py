"""Send markers and unmatched-receipt events of the SMPP gateway (no servers needed)."""

from __future__ import annotations

import time

from herald.v1 import events_pb2 as e

from gateways.smpp import events
from gateways.smpp.store import Marker


def test_held_and_written_markers_name_their_holder_and_age() -> None:
    now = time.time()
    held = Marker.parse(f"held:vm-12-ab:cd:{now - 30:.3f}".encode())
    assert (held.state, held.holder) == ("held", "vm-12-ab:cd")  # the time is the last field
    assert 29 < held.age() < 31
    written = Marker.parse(f"written:vm-1-x:{now:.3f}")
    assert written.holder == "vm-1-x" and written.raw == f"written:vm-1-x:{now:.3f}"
    legacy = Marker.parse(f"pending:{now - 5:.3f}")
    assert legacy.holder == "" and 4 < legacy.age() < 6
    ok = Marker.parse("ok:uk|39F99DD5,39F99DD6")
    assert ok.holder == "" and ok.route_and_ids == ("uk", ["39F99DD5", "39F99DD6"])


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
