"""Fuzzing the AIP-160 filter strings of ListCampaigns / ListMessages
(services/campaigns/filters.py) and of the recipients service's lists
(services/recipients/boundary.py): any string gives conditions or INVALID_ARGUMENT naming
the `filter` field, nothing else (no INTERNAL for a typo)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import grpc
from google.rpc import error_details_pb2
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BinaryExpression

from services.campaigns import filters
from services.recipients import boundary
from shared import auth
from shared.errors import HeraldError

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
MEMBER = auth.Principal("alice", "ws-1", frozenset({"operator"}))
MASTER = auth.Principal("root", "ws-0", frozenset({"master"}))

KEYS = ["status", "channel", "mode", "moderation", "period", "search", "workspace", "category",
        "carrier", "result", "stage", "category_id", "", "Status", "x"]
VALUES = ["SENDING", "paused", "NEW", "SMS", "email", "all", "24h", "7d", "2h", "delivered",
          "failed", "unknown", "new", "not_sent", "null", "DELIVRD", "INVALID_ADDRESS", "%",
          "_", "\\", "", "a b", "é", "ß", "ﬁ", "ǅ"]
QUOTES = ['"', "'", ""]


@st.composite
def filter_like(draw: st.DrawFn) -> str:
    """Terms that look like the grammar (key=v1,v2 joined by AND or spaces, quoted or not),
    with random text mixed in."""
    terms = []
    for _ in range(draw(st.integers(0, 4))):
        q = draw(st.sampled_from(QUOTES))
        key = draw(st.sampled_from(KEYS) | st.text(max_size=6))
        vals = draw(st.lists(st.sampled_from(VALUES) | st.text(max_size=8), max_size=3))
        terms.append(f"{key}{draw(st.sampled_from(['=', ' = ', '==', '']))}{q}{','.join(vals)}{q}")
    return draw(st.sampled_from([" AND ", " ", "  AND  ", " and ", ","])).join(terms)


filter_strings = st.text(max_size=120) | filter_like()


def only_filter_errors(call: Callable[[], Any]) -> None:
    try:
        call()
    except HeraldError as exc:
        assert exc.code == grpc.StatusCode.INVALID_ARGUMENT, exc.message
        named = []
        for detail in exc.details:
            assert isinstance(detail, error_details_pb2.BadRequest)
            named += [v.field for v in detail.field_violations]
        assert named == ["filter"], (named, exc.message)


@given(filter_strings)
@example("period=2h")  # regression: the violation named the request's `period` field
@example("status=SENDING AND period=90d")
def test_campaign_filters_give_conditions_or_a_filter_error(expr: str) -> None:
    only_filter_errors(lambda: filters.campaign_filter(expr, MEMBER, NOW))
    only_filter_errors(lambda: filters.campaign_filter(expr, MASTER, NOW))
    only_filter_errors(lambda: filters.names_status(expr, "NEW"))


@given(filter_strings)
def test_message_filters_give_conditions_or_a_filter_error(expr: str) -> None:
    only_filter_errors(lambda: filters.message_filter(expr))


@given(filter_strings)
def test_recipients_filters_give_a_value_or_a_filter_error(expr: str) -> None:
    only_filter_errors(lambda: boundary.channel_filter(expr))
    only_filter_errors(lambda: boundary.parse_filter(expr, "category_id", "category_id=<id>"))


@given(st.lists(st.sampled_from(["SENDING", "PAUSED", "DONE", "NEW", "DRAFT"]), min_size=1, max_size=3),
       st.sampled_from(["1h", "24h", "7d", "30d", "all"]), st.sampled_from(["SMS", "EMAIL"]))
def test_well_formed_campaign_filters_give_one_condition_per_term(statuses: list[str], period: str,
                                                                  channel: str) -> None:
    expr = f"status={','.join(statuses)} AND channel={channel} AND period={period}"
    conds = filters.campaign_filter(expr, MEMBER, NOW)
    # one per term, less period=all, plus the caller's workspace
    assert len(conds) == 3 - (period == "all") + 1
    assert filters.names_status(expr, statuses[0])


def like_matches(pattern: str, escape: str | None, value: str) -> bool:
    """SQL LIKE as PostgreSQL and SQLite read it (ESCAPE given or none)."""
    rx, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if escape is not None and ch == escape:
            assert i + 1 < len(pattern), "LIKE pattern must not end with escape character"
            rx.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        rx.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.fullmatch("".join(rx), value, re.S) is not None


def like_clauses(cond: Any) -> list[BinaryExpression[Any]]:
    return [cl for cl in cond.clauses if isinstance(cl, BinaryExpression) and cl.operator is operators.like_op]


search_text = st.text(st.sampled_from("ab%_\\ '\"x"), min_size=1, max_size=8).filter(
    lambda s: s.strip() == s and " AND " not in s)
names = st.text(st.sampled_from("ab%_\\ '\"xAB"), max_size=12)


@given(search_text, names)
@example("50%", "150 people")  # regression: % matched anything in ListMessages' search
@example("a_b", "axb")  # regression: _ matched any character
@example("a\\", "a\\b")  # regression: a trailing backslash escaped the closing %
def test_search_matches_the_text_literally(text: str, name: str) -> None:
    expr = shlex.quote(f"search={text}")
    message_like = like_clauses(filters.message_filter(expr)[0])
    campaign_like = like_clauses(filters.campaign_filter(expr, MEMBER, NOW)[0])[1:]  # sender, name
    for clause in message_like + campaign_like:
        pattern = clause.right.value
        escape = clause.modifiers.get("escape")
        assert like_matches(pattern, escape, name.lower()) == (text.lower() in name.lower()), pattern
