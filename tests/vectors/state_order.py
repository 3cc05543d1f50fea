"""The message state order as test vectors: every consumer that keeps a message's status
(the stats aggregator's Lua in Redis, the campaigns ledger's SQL) must give these results.

Each Case reads: a message is in status `current` on attempt `current_attempt`; an event of
kind `incoming` (the events.message.<kind> suffix: "delivered", "opened", ...) arrives for
attempt `incoming_attempt` (0 = not said: the message's current attempt); the message ends
in status `expected` on attempt `expected_attempt`.

How to run them against an implementation:

    from tests.vectors import state_order as vectors

    for case in vectors.CASES:
        # 1. bring a new message to case.current on case.current_attempt, e.g. by applying an
        #    event of kind vectors.kind(vectors.setup_kind(case.current)) with
        #    attempt=case.current_attempt (or by writing the row directly);
        # 2. apply an event of kind vectors.kind(case.incoming), attempt=case.incoming_attempt
        #    (opened/clicked/replied events need a unique event_id);
        # 3. assert (status, attempt) == (vectors.status(case.expected), case.expected_attempt),
        #    reporting case.id on failure.

The expected results are written out here from the product's rules, independently of
shared.states.RANK (deriving them from it would test nothing):
  - within an attempt a status only moves up the tiers below; an event of the message's
    own tier or a lower one changes nothing (a late `submitted` never overwrites
    `delivered`; of two final outcomes the first one stays);
  - opened, clicked and replied never change the status;
  - an event of a higher attempt (RetryMessages republishes the message) starts the message
    afresh whatever its status; an event of a lower attempt is stale.
"""

from __future__ import annotations

from typing import NamedTuple

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

# Tiers, lowest first. ASSUMED_DELIVERED (SMS: no receipt before the timeout) sits below the
# final outcomes so that a late receipt still corrects it.
TIERS: tuple[tuple[str, ...], ...] = (
    ("QUEUED",),
    ("SENDING",),
    ("DEFERRED",),
    ("SUBMITTED",),
    ("ASSUMED_DELIVERED",),
    ("DELIVERED", "FAILED", "OPTED_OUT", "CANCELLED"),
)
STATUSES: tuple[str, ...] = tuple(s for tier in TIERS for s in tier)

# Event kinds that move the status, and the status each one means.
STATUS_KINDS: dict[str, str] = {
    "queued": "QUEUED",
    "sending": "SENDING",
    "deferred": "DEFERRED",
    "submitted": "SUBMITTED",
    "assumed_delivered": "ASSUMED_DELIVERED",
    "delivered": "DELIVERED",
    "failed": "FAILED",
    "bounced": "FAILED",
    "opted_out": "OPTED_OUT",
    "cancelled": "CANCELLED",
}
# Event kinds counted on the message without moving its status.
COUNTER_KINDS: tuple[str, ...] = ("opened", "clicked", "replied")


class Case(NamedTuple):
    current: str
    incoming: str
    expected: str
    current_attempt: int = 1
    incoming_attempt: int = 0
    expected_attempt: int = 1
    why: str = ""

    @property
    def id(self) -> str:
        return (f"{self.current}@{self.current_attempt}+{self.incoming}@{self.incoming_attempt}"
                f"->{self.expected}@{self.expected_attempt}")


def status(name: str) -> int:
    """'DELIVERED' -> MessageStatus value."""
    return c.MessageStatus.Value(f"MESSAGE_STATUS_{name}")


def kind(name: str) -> int:
    """'delivered' -> MessageEventKind value."""
    return e.MessageEventKind.Value(f"MESSAGE_EVENT_KIND_{name.upper()}")


def setup_kind(status_name: str) -> str:
    """The event kind that brings a new message to this status."""
    return next(k for k, s in STATUS_KINDS.items() if s == status_name)


def _tier(status_name: str) -> int:
    return next(i for i, tier in enumerate(TIERS) if status_name in tier)


# The cases people ask about, with the reason.
NAMED: list[Case] = [
    Case("DELIVERED", "submitted", "DELIVERED", why="a late submit_sm response never undoes a receipt"),
    Case("DELIVERED", "failed", "DELIVERED", why="the first final outcome stays"),
    Case("FAILED", "delivered", "FAILED", why="the first final outcome stays"),
    Case("SUBMITTED", "deferred", "SUBMITTED", why="a late 4xx of an earlier try does not reopen an accepted email"),
    Case("DEFERRED", "submitted", "SUBMITTED", why="a deferred email accepted on a later try"),
    Case("DEFERRED", "bounced", "FAILED", why="a deferred email finally bounced"),
    Case("SUBMITTED", "bounced", "FAILED", why="a bounce after the relay accepted the email"),
    Case("ASSUMED_DELIVERED", "delivered", "DELIVERED", why="a late receipt confirms an assumed delivery"),
    Case("ASSUMED_DELIVERED", "failed", "FAILED", why="a late receipt corrects an assumed delivery"),
    Case("DELIVERED", "assumed_delivered", "DELIVERED", why="the timeout fired after the receipt"),
    Case("SUBMITTED", "opted_out", "OPTED_OUT", why="a STOP reply before any receipt"),
    Case("DELIVERED", "opted_out", "DELIVERED", why="a STOP reply after delivery keeps the outcome"),
    Case("QUEUED", "cancelled", "CANCELLED", why="a campaign cancelled before sending"),
    Case("CANCELLED", "submitted", "CANCELLED", why="a job already in flight when the campaign was cancelled"),
    Case("SUBMITTED", "opened", "SUBMITTED", why="opens are counted, not a status"),
    Case("DELIVERED", "clicked", "DELIVERED", why="clicks are counted, not a status"),
    Case("DELIVERED", "replied", "DELIVERED", why="replies are counted, not a status"),
    Case("DELIVERED", "delivered", "DELIVERED", why="a redelivered event changes nothing"),
]

# Retries: RetryMessages republishes a message as QUEUED with attempt + 1.
ATTEMPTS: list[Case] = [
    Case("FAILED", "queued", "QUEUED", 1, 2, 2, "a retry starts the message afresh"),
    Case("DELIVERED", "queued", "QUEUED", 1, 2, 2, "an operator's retry of a delivered message"),
    Case("FAILED", "submitted", "SUBMITTED", 1, 2, 2, "the retry's submission seen before its queued event"),
    Case("QUEUED", "failed", "QUEUED", 2, 1, 2, "a late failure of the previous attempt is stale"),
    Case("SUBMITTED", "delivered", "SUBMITTED", 2, 1, 2, "a late receipt of the previous attempt is stale"),
    Case("QUEUED", "submitted", "SUBMITTED", 2, 0, 2, "no attempt said: the current one"),
    Case("SUBMITTED", "delivered", "DELIVERED", 2, 2, 2, "the retry delivered"),
    Case("DELIVERED", "submitted", "DELIVERED", 2, 2, 2, "monotonic within the retry too"),
    Case("SUBMITTED", "delivered", "DELIVERED", 1, 1, 1, "attempt 1 said explicitly"),
    Case("DELIVERED", "opened", "DELIVERED", 2, 1, 2, "an open of any attempt never changes the status"),
]


def _matrix() -> list[Case]:
    """Every status with every event kind, within one attempt."""
    out: list[Case] = []
    for cur in STATUSES:
        for k, new in STATUS_KINDS.items():
            out.append(Case(cur, k, new if _tier(new) > _tier(cur) else cur))
        for k in COUNTER_KINDS:
            out.append(Case(cur, k, cur))
    return out


MATRIX: list[Case] = _matrix()
CASES: list[Case] = NAMED + ATTEMPTS + MATRIX
