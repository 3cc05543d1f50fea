"""Send marker values and the rate-limited abandon log (pure functions, no servers)."""

from __future__ import annotations

import json
import logging

import pytest

from gateways.email import dedup
from gateways.email.worker import RateLimitedLog


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
