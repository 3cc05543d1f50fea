"""Prometheus counters of message outcomes, counted where the ledger of record moves a row.

Labels are bounded: channel, final status and failure category names (never a campaign,
workspace or address). Counting happens on ledger transitions, not on events: a duplicate
or stale event moves no row and counts nothing.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Mapping
from typing import Any

from herald.v1 import common_pb2 as c
from prometheus_client import Counter

from shared import channels, states

S = c.MessageStatus

MESSAGES = Counter(
    "herald_campaign_messages_total",
    "Ledger messages reaching a final status, once per message and attempt, by channel and "
    "that status (delivered, assumed_delivered, failed, opted_out, cancelled; an email "
    "accepted by the relay is final as submitted). A final status later corrected (an assumed "
    "delivery settled by a late receipt, an accepted email that bounces) is not counted again: "
    "the failure is in herald_messages_failed_total.",
    ["channel", "status"],
)
FAILED = Counter(
    "herald_messages_failed_total",
    "Ledger messages moving to FAILED (a late receipt or bounce included), by channel and "
    "failure category (INVALID_ADDRESS, UNSUBSCRIBED, CARRIER_REJECTED, THROTTLED, "
    "CONTENT_REJECTED, CONFIG_ERROR, EXPIRED, UNKNOWN; UNSPECIFIED = the gateway gave none).",
    ["channel", "category"],
)

CHANNELS = tuple(s.channel for s in channels.specs())
CATEGORIES = tuple(v for v in c.FailureCategory.values() if v != c.FAILURE_CATEGORY_UNSPECIFIED)


def channel_name(channel: int) -> str:
    return channels.spec(channel).name if channels.known(channel) else str(channel)


def category_name(category: int) -> str:
    return c.FailureCategory.Name(category).removeprefix("FAILURE_CATEGORY_")


def final_statuses(channel: int) -> list[int]:
    return sorted(channels.spec(channel).final_statuses)


# Exported at 0 from the start, so rate() and ratios have a series before the first outcome.
for _ch in CHANNELS:
    for _st in final_statuses(_ch):
        MESSAGES.labels(channel_name(_ch), states.status_name(_st).lower())
    for _cat in CATEGORIES:
        FAILED.labels(channel_name(_ch), category_name(_cat))

# ("final", channel, status) or ("failed", channel, category): one transition worth counting.
Outcome = tuple[str, int, int]


def transitions(before: dict[str, list[int]], rows: list[Mapping[str, Any]], tally: Tally[Outcome]) -> None:
    """Replay the ledger's update guard (repo.message_updates.STATUS_UPDATE) over a batch
    of status rows in order, adding to `tally` each row that reaches a final status and each
    that moves to FAILED. `before` is updated as the rows are."""
    for row in rows:
        cur = before.get(row["b_id"])
        if cur is None:  # unknown message: the update changes nothing
            continue
        status, attempt, channel = cur
        ev_attempt, new = row["b_attempt"], row["b_status"]
        if ev_attempt and attempt > ev_attempt:
            continue  # an older attempt's event
        newer_attempt = bool(ev_attempt) and attempt < ev_attempt
        if not (states.RANK[status] < states.RANK[new] or newer_attempt):
            continue  # stale or duplicate
        if states.is_final(new, channel) and (newer_attempt or not states.is_final(status, channel)):
            tally[("final", channel, new)] += 1
        if new == c.MESSAGE_STATUS_FAILED and (newer_attempt or status != c.MESSAGE_STATUS_FAILED):
            tally[("failed", channel, row["b_category"])] += 1
        cur[0] = new
        cur[1] = ev_attempt or attempt


def record(tally: Tally[Outcome]) -> None:
    """Add a committed batch's outcomes to the counters."""
    for (kind, channel, value), n in tally.items():
        if kind == "failed":
            FAILED.labels(channel_name(channel), category_name(value)).inc(n)
        else:
            MESSAGES.labels(channel_name(channel), states.status_name(value).lower()).inc(n)
