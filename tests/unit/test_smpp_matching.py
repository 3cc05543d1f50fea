"""Receipt source address vs message destination, the rate-limited log of unmatched receipts,
reply-link sender keys, and the SMS text rendering of a job."""

from __future__ import annotations

import logging

import pytest
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from gateways.smpp import receipts
from gateways.smpp.content import render_text
from gateways.smpp.ratelog import RateLimitedLog
from gateways.smpp.rejection import JobRejected
from gateways.smpp.store import last_key


@pytest.mark.parametrize("source", ["447700900123", "+447700900123", "00447700900123",
                                    "07700900123", "7700900123", "+44 7700 900123"])
def test_same_number_in_every_form(source: str) -> None:
    assert receipts.same_number(source, "+447700900123")


@pytest.mark.parametrize("source", ["447700900124", "337700900123", "900123", "+4477009001230"])
def test_other_numbers_do_not_match(source: str) -> None:
    assert not receipts.same_number(source, "+447700900123")


def test_unverifiable_addresses_are_not_held_against_a_receipt() -> None:
    assert receipts.same_number("", "+447700900123")        # SMSC sent no source address
    assert receipts.same_number("HERALD", "+447700900123")  # alphanumeric
    assert receipts.same_number("447700900123", "")          # mapping of an earlier version


def test_rate_limited_log_counts_what_it_suppressed(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    logger = logging.getLogger("test.ratelog")
    rl = RateLimitedLog(logger, every=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="test.ratelog"):
        assert rl.info("unknown_id", "receipt matched no message")
        assert not rl.info("unknown_id", "receipt matched no message")
        assert not rl.info("unknown_id", "receipt matched no message")
        assert rl.info("address_mismatch", "other reason")  # its own budget
        now[0] += 10.0
        assert rl.info("unknown_id", "receipt matched no message")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["receipt matched no message", "other reason",
                     "receipt matched no message (2 more suppressed in the last 10 s)"]
    assert [r.levelno for r in caplog.records] == [logging.INFO] * 3
    assert caplog.records[-1].suppressed == 2  # type: ignore[attr-defined]


def test_reply_link_key_is_one_per_sender_whatever_its_form() -> None:
    assert last_key("+447700900999", "447700900101") == last_key("447700900999", "447700900101") \
        == last_key("00447700900999", "447700900101")
    assert last_key("HERALD", "447700900101") == last_key("herald", "447700900101")
    assert last_key("HERALD", "447700900101") != last_key("OTHER", "447700900101")


def _job(text: str, **fields: str) -> e.MessageJob:
    job = e.MessageJob(message_id="m1", to="+447700900123", text=text)
    job.fields.update(fields)
    return job


def test_render_text_uses_the_jobs_variables() -> None:
    job = _job("Hi {{ first_name }}, your code is {{ code }}. {{ fields.code }}", first_name="Alex", code="4821")
    assert render_text(job) == "Hi Alex, your code is 4821. 4821"
    assert render_text(_job("No variables at all.")) == "No variables at all."
    assert render_text(_job("Hi {{ first_name }}")) == "Hi "  # a variable the recipient lacks


@pytest.mark.parametrize("text, code", [("Hi {{ first_name }", "TEMPLATE_ERROR"),
                                        ("{{ 1 // 0 }}", "TEMPLATE_ERROR"),
                                        ("{{ first_name }}", "EMPTY_TEXT"),
                                        ("", "EMPTY_TEXT")])
def test_render_text_refuses_what_cannot_be_sent(text: str, code: str) -> None:
    with pytest.raises(JobRejected) as info:
        render_text(_job(text))
    assert info.value.code == code
    assert info.value.category == c.FAILURE_CATEGORY_CONTENT_REJECTED
