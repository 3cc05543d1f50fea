"""Send marker values, what a found marker means, and the rate-limited abandon log (pure
functions, no servers)."""

from __future__ import annotations

import json
import logging
import time

import pytest

from gateways.core import judge
from gateways.core.memory import HandedBack, Unrecorded
from gateways.core.outcome import submitted
from gateways.core.ratelog import RateLimitedLog
from gateways.email import dedup


def test_holder_values_are_the_json_the_scripts_compare() -> None:
    h = dedup.Holder('own"er', "1f")
    held = json.loads(h.held)
    assert held["s"] == dedup.HELD and (held["o"], held["b"]) == ('own"er', "1f")
    written = json.loads(h.written(123.5))
    assert written == {"s": dedup.WRITTEN, "t": 123.5, "o": 'own"er', "b": "1f"}
    assert dedup.Holder("o", "2").held != h.held  # one claim token per batch


def test_abandon_log_one_line_per_reason_then_counts(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.abandon")
    rl = RateLimitedLog(logger, "email jobs abandoned", every=3600)
    with caplog.at_level(logging.WARNING, logger="test.abandon"):
        rl.note("redis_lost", message_id="m1")
        rl.note("redis_lost", message_id="m2")
        rl.note("worker_stopped", message_id="m3")
        rl.flush()
    lines = [(r.getMessage(), r.reason, r.count, r.message_id) for r in caplog.records]  # type: ignore[attr-defined]
    assert lines == [("email jobs abandoned", "redis_lost", 1, "m1"),
                     ("email jobs abandoned", "worker_stopped", 1, "m3")]
    rl.every = 0  # the interval passed: the held-back count comes out with the next flush
    with caplog.at_level(logging.WARNING, logger="test.abandon"):
        caplog.clear()
        rl.flush()
    assert [(r.reason, r.count) for r in caplog.records] == [("redis_lost", 1)]  # type: ignore[attr-defined]


def test_email_marker_keys_keep_their_names() -> None:
    # a rolling upgrade reads the markers the previous version wrote
    assert dedup.key("m1", 2) == "herald:email:send:m1:2"
    assert dedup.ref_key("m1") == "herald:email:ref:m1"
    assert dedup.LIVE_PREFIX == "herald:email:live:"


def test_found_markers_replay_wait_or_abandon() -> None:
    now = time.time()
    none = Unrecorded(10)
    out = judge.judge({"s": "submitted", "t": now, "k": 2, "code": "250", "d": "ok", "cat": 0,
                       "p": "<x@example.com>", "r": "relay:25"}, False, "me", 150, none, ("m", 1))
    assert out.action == judge.REPLAY and out.outcome is not None
    assert (out.outcome.provider_id, out.outcome.route) == ("<x@example.com>", "relay:25")
    # held by anyone the claim did not take: busy, look again within 2 s
    held = judge.judge({"s": "held", "t": now, "o": "other"}, True, "me", 150, none, ("m", 1))
    assert held.action == judge.BUSY and 0.5 <= held.retry <= 2.0
    # written by a live process within its lease: busy; by a stopped one: ABANDONED
    live = judge.judge({"s": "written", "t": now, "o": "other"}, True, "me", 150, none, ("m", 1))
    assert live.action == judge.BUSY
    gone = judge.judge({"s": "written", "t": now, "o": "other"}, False, "me", 150, none, ("m", 1))
    assert (gone.action, gone.reason) == (judge.ABANDON, "worker_stopped")
    old = judge.judge({"s": "sending", "t": now - 151}, False, "me", 150, none, ("m", 1))
    assert (old.action, old.reason) == (judge.ABANDON, "worker_stopped")
    bad = judge.judge({"s": "corrupt"}, False, "me", 150, none, ("m", 1))
    assert (bad.action, bad.reason) == (judge.ABANDON, "corrupt_marker")


def test_own_unrecorded_outcome_settles_its_written_marker() -> None:
    mem = Unrecorded(10)
    mem.put(("m", 1), submitted("<x@example.com>", "250 ok", "relay:25"))
    mine = {"s": "written", "t": time.time() - 1000, "o": "me"}
    out = judge.judge(mine, False, "me", 150, mem, ("m", 1))
    assert out.action == judge.KNOWN and out.outcome is not None
    assert out.outcome.provider_id == "<x@example.com>"
    assert judge.judge(mine, False, "me", 150, mem, ("m", 1)).action == judge.ABANDON  # used once


def test_handed_back_memory_knows_only_the_very_next_delivery() -> None:
    mem = HandedBack(2)
    mem.put(("a", 1), 1)
    assert mem.known_unwritten(("a", 1), 2)
    mem.put(("b", 1), 1)
    assert not mem.known_unwritten(("b", 1), 3)  # someone else had a delivery in between
    for k in ("c", "d", "e"):
        mem.put((k, 1), 1)
    assert len(mem) == 2 and not mem.known_unwritten(("c", 1), 2)  # oldest dropped
