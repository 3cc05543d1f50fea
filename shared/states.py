"""Message state machine shared by every consumer: ranks make state monotonic.

A consumer applies an event only when its status ranks higher than the stored one,
so a late `submitted` never overwrites `delivered`, and redelivered events change nothing.
The order is defined here once: the stats aggregator's Lua (services.stats.event_script,
services.stats.rebuild) and the ledger's SQL (services.campaigns.repo.state_order) are built
from RANK; `resulting` is the whole rule, attempts included. tests/vectors/state_order.py
holds the expected results every implementation is tested against.
"""

from __future__ import annotations

import functools

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

S = c.MessageStatus
K = e.MessageEventKind

RANK: dict[int, int] = {
    S.MESSAGE_STATUS_UNSPECIFIED: -1,
    S.MESSAGE_STATUS_QUEUED: 0,
    S.MESSAGE_STATUS_SENDING: 1,
    S.MESSAGE_STATUS_DEFERRED: 2,
    S.MESSAGE_STATUS_SUBMITTED: 3,
    # A late receipt may still turn an assumed delivery into DELIVERED or FAILED.
    S.MESSAGE_STATUS_ASSUMED_DELIVERED: 4,
    S.MESSAGE_STATUS_DELIVERED: 5,
    S.MESSAGE_STATUS_FAILED: 5,
    S.MESSAGE_STATUS_OPTED_OUT: 5,
    S.MESSAGE_STATUS_CANCELLED: 5,
}

FINAL = {
    S.MESSAGE_STATUS_DELIVERED,
    S.MESSAGE_STATUS_ASSUMED_DELIVERED,
    S.MESSAGE_STATUS_FAILED,
    S.MESSAGE_STATUS_OPTED_OUT,
    S.MESSAGE_STATUS_CANCELLED,
}

# States that mean "handed to the carrier / MTA at some point".
SENT = {S.MESSAGE_STATUS_SUBMITTED, S.MESSAGE_STATUS_DELIVERED, S.MESSAGE_STATUS_ASSUMED_DELIVERED}

KIND_STATUS: dict[int, int] = {
    K.MESSAGE_EVENT_KIND_QUEUED: S.MESSAGE_STATUS_QUEUED,
    K.MESSAGE_EVENT_KIND_SENDING: S.MESSAGE_STATUS_SENDING,
    K.MESSAGE_EVENT_KIND_SUBMITTED: S.MESSAGE_STATUS_SUBMITTED,
    K.MESSAGE_EVENT_KIND_DELIVERED: S.MESSAGE_STATUS_DELIVERED,
    K.MESSAGE_EVENT_KIND_FAILED: S.MESSAGE_STATUS_FAILED,
    K.MESSAGE_EVENT_KIND_DEFERRED: S.MESSAGE_STATUS_DEFERRED,
    K.MESSAGE_EVENT_KIND_BOUNCED: S.MESSAGE_STATUS_FAILED,
    K.MESSAGE_EVENT_KIND_OPTED_OUT: S.MESSAGE_STATUS_OPTED_OUT,
    K.MESSAGE_EVENT_KIND_ASSUMED_DELIVERED: S.MESSAGE_STATUS_ASSUMED_DELIVERED,
    K.MESSAGE_EVENT_KIND_CANCELLED: S.MESSAGE_STATUS_CANCELLED,
}


# Enum names are looked up through the descriptor on every call (a few µs); these run
# per published event, so the answers are kept.
@functools.cache
def kind_name(kind: int) -> str:
    """MESSAGE_EVENT_KIND_DELIVERED -> 'delivered' (the subject suffix)."""
    return e.MessageEventKind.Name(kind).removeprefix("MESSAGE_EVENT_KIND_").lower()


@functools.cache
def message_subject(kind: int) -> str:
    return f"events.message.{kind_name(kind)}"


def status_name(status: int) -> str:
    return c.MessageStatus.Name(status).removeprefix("MESSAGE_STATUS_")


def is_final(status: int, channel: int) -> bool:
    """Final for campaign completion, by the channel's rule (shared.channels: an email
    accepted by the relay is settled unless a bounce arrives later)."""
    return status in FINAL or status in _channel_finals(channel)


@functools.cache
def _channel_finals(channel: int) -> frozenset[int]:
    from shared import channels  # the registry builds its rules on this module

    return channels.spec(channel).final_statuses if channels.known(channel) else frozenset()


def advances(old: int, new: int) -> bool:
    return RANK.get(new, -1) > RANK.get(old, -1)


def resulting(status: int, attempt: int, new_status: int, new_attempt: int) -> tuple[int, int]:
    """(status, attempt) of a message in `status` on `attempt` after a status event of
    `new_attempt` (0: not said, i.e. the current attempt; a message that never said one is
    on its first). A higher attempt starts the message afresh, a lower one is stale; within
    an attempt the status only moves up the ranks."""
    current = max(attempt, 1)
    given = new_attempt or current
    if given > current:
        return new_status, given
    if given == current and advances(status, new_status):
        return new_status, current
    return status, current
