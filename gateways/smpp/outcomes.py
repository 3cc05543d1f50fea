"""What the SMSC's answer means for a job: the Outcome recorded for it (its send marker's
final state, its event, the id mappings of its parts), built the same way whether it was
just answered or replayed from a marker on a redelivery."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from gateways.smpp import events, metrics, pdu, ratelog
from gateways.smpp.logs import log
from gateways.smpp.store import Mapping
from shared import jsfast

if TYPE_CHECKING:
    from gateways.smpp.binds import Route
    from gateways.smpp.matching import Receipt

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


def failure_category(status: int) -> int:
    return _CATEGORY_BY_STATUS.get(status, FC.FAILURE_CATEGORY_CARRIER_REJECTED)


@dataclass
class Outcome:
    """What to record for one job once the SMSC has answered (see recording.Recorder);
    its JetStream message is acked once it is recorded."""

    ident: Mapping
    marker: tuple[str, str] | None
    event: events.Outgoing | None
    parts: list[tuple[Mapping, list[str]]] = field(default_factory=list)
    msg: jsfast.JsMsg | None = None
    keys: list[str] = field(default_factory=list)         # id keys (early receipts wait on them)
    parked: list[Receipt] = field(default_factory=list)  # receipts that came before the mapping


def failed_event(ident: Mapping, code: str, description: str, category: int,
                 ids: list[str] | None = None) -> events.Outgoing:
    fields: dict[str, Any] = dict(error_code=code, error_description=description,
                                  failure_category=category, parts=ident.parts)
    if ids:
        fields["provider_message_id"] = ids[0]
    return events.message(K.MESSAGE_EVENT_KIND_FAILED, ident,
                          events.event_key(ident.message_id, "failed", ident.attempt), **fields)


def failed_now(msg: jsfast.JsMsg, job: e.MessageJob, code: str, description: str,
               category: int) -> Outcome:
    """A job that cannot be sent as given: FAILED, no claim (nothing to protect)."""
    ident = Mapping(job.message_id, job.campaign_id, job.workspace_id, job.attempt,
                    smsc_id="", to=job.to, variant=job.variant, route="")  # sent on no route
    return Outcome(ident, None, failed_event(ident, code, description, category), msg=msg)


def accepted(ident: Mapping, route: Route, ids: list[str]) -> Outcome:
    """Every part accepted: marker ok:<route>|<ids>, SUBMITTED, each part's id mapping."""
    now = time.time()
    first = Mapping(ident.message_id, ident.campaign_id, ident.workspace_id, ident.attempt,
                    ids[0], ident.to, ident.variant, 1, len(ids), route.name, ids[0], now,
                    ident.sender)
    # Part 1 is `first` itself (no dataclasses.replace on the per-message path).
    parts = [(first if i == 1 else first.for_part(i, smsc_id), route.id_format.store_keys(smsc_id))
             for i, smsc_id in enumerate(ids, 1) if smsc_id]
    if len(parts) < len(ids):
        log.warning("submit_sm_resp without message_id: its receipt cannot be matched",
                    extra={"message_id": ident.message_id})
    # provider_message_id is part 1's id (the ledger's durable key for receipts that Redis
    # no longer maps); later parts' ids live in the Redis map only.
    return Outcome(
        first, ("ok", f"{route.name}|{','.join(ids)}"),
        events.message(K.MESSAGE_EVENT_KIND_SUBMITTED, first,
                       events.event_key(ident.message_id, "submitted", ident.attempt),
                       provider_message_id=ids[0], parts=len(ids)),
        parts,
    )


def refused(ident: Mapping, status: int, ids: list[str]) -> Outcome:
    metrics.JOBS.labels("failed").inc()
    desc = f"{pdu.status_name(status)}: {pdu.status_description(status)}"
    if ids:
        desc += f" (part {len(ids) + 1} of {ident.parts}; earlier parts were accepted)"
    code = pdu.status_code(status)
    return Outcome(ident, ("failed", code), failed_event(ident, code, desc, failure_category(status), ids))


class Abandons:
    """Jobs that may have reached the SMSC with no outcome on record, and the other unknown
    outcomes (no response): FAILED, never resent. New abandons are counted and logged,
    rate-limited (they come in floods after a crash or a Redis loss)."""

    def __init__(self) -> None:
        self._log = ratelog.RateLimitedLog(log, level=logging.WARNING)

    def unknown(self, ident: Mapping, reason: str, ids: list[str]) -> Outcome:
        if reason in metrics.ABANDONED_REASONS:
            return self.abandoned(ident, reason, replay=True)
        metrics.JOBS.labels("failed").inc()
        what = {"timeout": "no submit_sm_resp in time",
                "connection_lost": "the SMPP connection dropped before submit_sm_resp"}
        desc = f"{what.get(reason, reason)}; the SMSC may have accepted it, so it was not resubmitted"
        return Outcome(ident, ("unknown", reason),
                       failed_event(ident, reason.upper(), desc, FC.FAILURE_CATEGORY_UNKNOWN, ids))

    def abandoned(self, ident: Mapping, reason: str, replay: bool = False) -> Outcome:
        """A job that may have reached the SMSC, with no outcome on record (its process died
        after writing it, or Redis lost its marker): FAILED, never resent. `replay`: the
        marker already says so (counted and logged when it was decided)."""
        metrics.JOBS.labels("failed").inc()
        if not replay:
            metrics.ABANDONED.labels(reason).inc()
            self._log.info(
                reason, "job abandoned: the SMSC may have accepted it; not resent", reason=reason,
                message_id=ident.message_id, campaign_id=ident.campaign_id, route=ident.route)
        return Outcome(ident, ("unknown", reason),
                       failed_event(ident, "ABANDONED", ABANDONED_DESCRIPTION,
                                    FC.FAILURE_CATEGORY_UNKNOWN))
