"""The campaign state machine: one transition table, checked on every change."""

from __future__ import annotations

from herald.v1 import campaigns_pb2 as pb

from shared.errors import HeraldError, precondition

ST = pb.CampaignStatus


def name(status: int) -> str:
    return ST.Name(status).removeprefix("CAMPAIGN_STATUS_")


def value(status_name: str) -> int:
    return ST.Value(f"CAMPAIGN_STATUS_{status_name.upper()}")


DRAFT, NEW, PENDING, BUILDING, SENDING, PAUSED, DONE, CANCELLED, FAILED, EXPIRED = (
    "DRAFT", "NEW", "PENDING", "BUILDING", "SENDING", "PAUSED", "DONE", "CANCELLED", "FAILED",
    "EXPIRED",
)

TERMINAL = frozenset({DONE, CANCELLED, FAILED, EXPIRED})
ACTIVE = frozenset({PENDING, BUILDING, SENDING, PAUSED})
ARCHIVABLE = TERMINAL | {NEW}
DELETABLE = TERMINAL | {DRAFT, NEW}
EDITABLE = frozenset({DRAFT, NEW, PENDING})

TRANSITIONS: dict[str, frozenset[str]] = {
    DRAFT: frozenset({NEW, CANCELLED}),
    NEW: frozenset({PENDING, CANCELLED}),
    # PENDING -> NEW: content edited after approval goes back to moderation.
    PENDING: frozenset({NEW, BUILDING, CANCELLED, EXPIRED}),
    BUILDING: frozenset({SENDING, FAILED, CANCELLED}),
    SENDING: frozenset({PAUSED, DONE, CANCELLED, FAILED, EXPIRED}),
    PAUSED: frozenset({SENDING, CANCELLED, EXPIRED}),
    DONE: frozenset({SENDING}),  # retrying failed messages (RetryMessages)
    CANCELLED: frozenset(),
    FAILED: frozenset(),
    EXPIRED: frozenset(),
}


def check(campaign_id: str, current: str, target: str) -> None:
    allowed = TRANSITIONS[current]
    if target not in allowed:
        raise illegal(campaign_id, current, target)


def illegal(campaign_id: str, current: str, target: str) -> HeraldError:
    allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (terminal)"
    return precondition(
        f"campaigns/{campaign_id}", "STATE",
        f"campaign {campaign_id} is {current}; cannot move to {target} "
        f"(allowed from {current}: {allowed})",
    )
