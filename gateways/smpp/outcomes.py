"""What the SMSC's answer means for a job, as the runtime's Outcome (gateways.core.outcome:
its marker's final state and its event), and the outcomes of the markers this gateway wrote
before it ran on the runtime (`legacy_marker`).

A SUBMITTED outcome carries every part's SMSC id (`extra`, comma-separated: the receipt id
mappings are written from it again when a redelivery replays it) and the part count; its
provider_message_id is part 1's id (the ledger's durable key for receipts)."""

from __future__ import annotations

from typing import Any

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from gateways.core import markers as m
from gateways.core.outcome import Outcome, as_marker
from gateways.smpp import pdu

# The generated modules' top-level enum constants: EnumTypeWrapper attribute access
# (e.MessageEventKind.X) looks the name up on every use, ~3 µs each (measured).
K = e
FC = c

_CATEGORY_BY_STATUS = {
    0x0A: FC.FAILURE_CATEGORY_CONFIG_ERROR,    # ESME_RINVSRCADR
    0x0B: FC.FAILURE_CATEGORY_INVALID_ADDRESS,  # ESME_RINVDSTADR
    0x0D: FC.FAILURE_CATEGORY_CONFIG_ERROR,    # ESME_RBINDFAIL
    0x0E: FC.FAILURE_CATEGORY_CONFIG_ERROR,    # ESME_RINVPASWD
    0x0F: FC.FAILURE_CATEGORY_CONFIG_ERROR,    # ESME_RINVSYSID
    0x04: FC.FAILURE_CATEGORY_CONFIG_ERROR,    # ESME_RINVBNDSTS
    0x48: FC.FAILURE_CATEGORY_CONFIG_ERROR,    # ESME_RINVSRCTON
    0x49: FC.FAILURE_CATEGORY_CONFIG_ERROR,    # ESME_RINVSRCNPI
    0x50: FC.FAILURE_CATEGORY_INVALID_ADDRESS,  # ESME_RINVDSTTON
    0x51: FC.FAILURE_CATEGORY_INVALID_ADDRESS,  # ESME_RINVDSTNPI
    0x01: FC.FAILURE_CATEGORY_CONTENT_REJECTED,  # ESME_RINVMSGLEN
    0x43: FC.FAILURE_CATEGORY_CONTENT_REJECTED,  # ESME_RINVESMCLASS
    0x58: FC.FAILURE_CATEGORY_THROTTLED,       # ESME_RTHROTTLED
    0x14: FC.FAILURE_CATEGORY_THROTTLED,       # ESME_RMSGQFUL
    0x62: FC.FAILURE_CATEGORY_EXPIRED,         # ESME_RINVEXPIRY
}

ABANDONED_DESCRIPTION = "the SMSC may have accepted it; not resent to avoid a duplicate"
# How the earlier gateway named the reasons of ABANDONED in its markers (unknown:<reason>).
ABANDONED_REASONS = ("abandoned", "redis_lost")
_UNKNOWN = {"timeout": "no submit_sm_resp in time",
            "connection_lost": "the SMPP connection dropped before submit_sm_resp"}


def failure_category(status: int) -> int:
    return _CATEGORY_BY_STATUS.get(status, FC.FAILURE_CATEGORY_CARRIER_REJECTED)


def accepted(route: str, ids: list[str]) -> Outcome:
    """Every part accepted: SUBMITTED with part 1's id, the part count and all the ids."""
    return Outcome(K.MESSAGE_EVENT_KIND_SUBMITTED, provider_id=ids[0], route=route,
                   parts=len(ids), extra=",".join(ids))


def refused(status: int, route: str, parts: int, ids: list[str]) -> Outcome:
    """A submit_sm refused for good (ids: the parts accepted before it)."""
    desc = f"{pdu.status_name(status)}: {pdu.status_description(status)}"
    if ids:
        desc += f" (part {len(ids) + 1} of {parts}; earlier parts were accepted)"
    return Outcome(K.MESSAGE_EVENT_KIND_FAILED, pdu.status_code(status), desc,
                   failure_category(status), ids[0] if ids else "", route, parts)


def unknown(reason: str, route: str, parts: int, ids: list[str]) -> Outcome:
    """Written, no answer (timeout, connection_lost): FAILED, never resubmitted."""
    desc = f"{_UNKNOWN.get(reason, reason)}; the SMSC may have accepted it, so it was not resubmitted"
    return Outcome(K.MESSAGE_EVENT_KIND_FAILED, reason.upper(), desc,
                   FC.FAILURE_CATEGORY_UNKNOWN, ids[0] if ids else "", route, parts)


def abandoned(route: str = "", parts: int = 0) -> Outcome:
    """Written by a gateway that stopped before recording the answer, or sent under a marker
    Redis lost: the SMSC may have it; FAILED, never resent."""
    return Outcome(K.MESSAGE_EVENT_KIND_FAILED, "ABANDONED", ABANDONED_DESCRIPTION,
                   FC.FAILURE_CATEGORY_UNKNOWN, route=route, parts=parts)


def rejected(code: str, description: str, category: int) -> Outcome:
    """A job that cannot be sent as given (address, sender, text, route): on no route."""
    return Outcome(K.MESSAGE_EVENT_KIND_FAILED, code, description[:500], category, parts=1)


def legacy_marker(text: str) -> dict[str, Any] | None:
    """The outcome of a marker the gateway wrote before the runtime, as a runtime marker:
    ok:<route>|<id>,<id>,...  failed:<command_status 0x%08X or a code>  unknown:<reason>
    (held/written/released/pending are read by gateways.core.markers itself)."""
    state, _, value = text.partition(":")
    if state == "ok":
        route, sep, ids = value.rpartition("|")
        parts = [i for i in ids.split(",") if i]
        if not parts:
            return None
        return {"s": m.SUBMITTED, **as_marker(accepted(route if sep else "default", parts))}
    if state == "failed":
        try:
            status = int(value, 16)
        except ValueError:
            status = pdu.ESME_RSYSERR
        return {"s": m.FAILED, **as_marker(refused(status, "", 0, []))}
    if state == "unknown":
        reason = value or state
        o = abandoned() if reason in ABANDONED_REASONS else unknown(reason, "", 0, [])
        return {"s": m.FAILED, **as_marker(o)}
    return None
