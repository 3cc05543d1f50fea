"""The ledger's durable receipt fallback: an SMPP receipt the gateway's Redis map no longer
knew (events.receipt.unmatched) matched against the ledger by provider id and handset, and the
outcome event a credited one becomes (published by the ledger consumer, ledger.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from sqlalchemy.ext.asyncio import AsyncConnection

from services.campaigns.repo import message_updates
from shared import states
from shared.timeutil import to_ts

S = c.MessageStatus
K = e.MessageEventKind

# The receipt stat -> (event kind, failure category) of gateways/smpp/receipts.py, copied as
# data: the ledger must read a receipt the way the gateway does without importing a gateway.
# Stats not listed (ENROUTE, ACCEPTD) are intermediate: nothing to record yet.
FINAL_STATS: dict[str, tuple[int, int]] = {
    "DELIVRD": (K.MESSAGE_EVENT_KIND_DELIVERED, c.FAILURE_CATEGORY_UNSPECIFIED),
    "UNDELIV": (K.MESSAGE_EVENT_KIND_FAILED, c.FAILURE_CATEGORY_CARRIER_REJECTED),
    "REJECTD": (K.MESSAGE_EVENT_KIND_FAILED, c.FAILURE_CATEGORY_CARRIER_REJECTED),
    "DELETED": (K.MESSAGE_EVENT_KIND_FAILED, c.FAILURE_CATEGORY_CARRIER_REJECTED),
    "EXPIRED": (K.MESSAGE_EVENT_KIND_FAILED, c.FAILURE_CATEGORY_EXPIRED),
    "UNKNOWN": (K.MESSAGE_EVENT_KIND_FAILED, c.FAILURE_CATEGORY_UNKNOWN),
}
STAT_ALIASES = {"DELIVERED": "DELIVRD", "UNDELIVERABLE": "UNDELIV", "REJECTED": "REJECTD",
                "ACCEPTED": "ACCEPTD", "EXPIRE": "EXPIRED", "DELETE": "DELETED"}
# Only a message handed to the carrier in its current attempt can be credited: an older
# attempt's receipt must not settle a retry that is QUEUED or SENDING again. A late receipt
# still turns an assumed delivery into its real outcome (as the gateway does).
CREDITABLE = frozenset({S.MESSAGE_STATUS_SUBMITTED, S.MESSAGE_STATUS_ASSUMED_DELIVERED})
SUFFIX_DIGITS = 9  # a national and an international form must share at least this many


def normalise_stat(stat: str) -> str:
    s = stat.strip().upper()
    return STAT_ALIASES.get(s, s)


def provider_key(smsc_id: str) -> str:
    """What PROVIDER_KEY computes in SQL: lower case, surrounding space and leading zeros off."""
    return smsc_id.strip().lstrip("0").lower()


def number_digits(address: str) -> str:
    """'+44 7700 900123', '0044 7700 900123', '447700900123' -> '447700900123';
    '07700900123' -> '7700900123'. An alphanumeric address: ''."""
    s = address.strip().removeprefix("+")
    digits = "".join(ch for ch in s if ch.isdigit())
    if not digits or any(ch.isalpha() for ch in s):
        return ""
    return digits.lstrip("0")  # international prefix 00 or a national trunk 0


def same_number(receipt_source: str, destination: str) -> bool:
    """The receipt's handset is the message's destination, whatever the number's form: equal
    digits, or (national vs international) the shorter ends the longer with at least
    SUFFIX_DIGITS digits. Unlike the gateway, an unreadable address is never a match: the
    ledger credits a receipt only when the handset proves it (SMSCs reissue ids)."""
    a, b = number_digits(receipt_source), number_digits(destination)
    if not a or not b:
        return False
    if len(a) == len(b):
        return a == b
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return len(short) >= SUFFIX_DIGITS and long_.endswith(short)


@dataclass(slots=True)
class Match:
    receipt: e.UnmatchedReceipt
    row: Any = None     # the ledger row credited, when one is
    reason: str = ""    # why none is (a RECEIPTS_UNMATCHED reason), or the RECEIPTS result


async def match_receipts(conn: AsyncConnection, receipts: list[e.UnmatchedReceipt]) -> list[Match]:
    """Each receipt's message: an SMS whose provider id is one of the receipt's readings, sent
    to the receipt's handset, and SUBMITTED (or ASSUMED_DELIVERED) in its current attempt.
    One indexed query for the whole batch."""
    keys = {provider_key(k) for r in receipts for k in r.provider_ids} - {""}
    rows: dict[str, list[Any]] = {}
    if keys:
        for row in await message_updates.by_provider_keys(conn, keys):
            rows.setdefault(provider_key(row["provider_message_id"]), []).append(row)
    out = []
    for r in receipts:
        if normalise_stat(r.stat) not in FINAL_STATS:
            out.append(Match(r, reason="intermediate"))
            continue
        seen = {row["id"]: row for k in r.provider_ids for row in rows.get(provider_key(k), [])}
        candidates = list(seen.values())
        if not candidates:
            out.append(Match(r, reason="unknown_id"))
            continue
        if not number_digits(r.source_address):
            out.append(Match(r, reason="no_address"))
            continue
        mine = [row for row in candidates if same_number(r.source_address, row["address"])]
        if not mine:
            out.append(Match(r, reason="address_mismatch"))
            continue
        open_ = [row for row in mine if row["status"] in CREDITABLE]
        if len(open_) > 1:  # a reissued id sent twice to one handset: not ours to guess
            out.append(Match(r, reason="ambiguous"))
        elif open_:
            out.append(Match(r, row=open_[0], reason="credited"))
        elif all(states.RANK[row["status"]] >= states.RANK[S.MESSAGE_STATUS_DELIVERED] for row in mine):
            out.append(Match(r, reason="settled"))  # already has its outcome (a resent receipt)
        else:
            out.append(Match(r, reason="not_submitted"))
    return out


def receipt_event(m: Match, now: Any) -> tuple[str, e.MessageEvent, str]:
    """The outcome event of a credited receipt, as the gateway would have published it. Its
    id is deterministic, so a receipt handled twice (redelivery, the SMSC resending it) is
    one event for JetStream's de-dup and for every consumer."""
    r, row = m.receipt, m.row
    stat = normalise_stat(r.stat)
    kind, category = FINAL_STATS[stat]
    key = f"{row['id']}:receipt:{provider_key(row['provider_message_id'])}"
    ev = e.MessageEvent(
        event_id=key, kind=kind, message_id=row["id"], campaign_id=row["campaign_id"],  # type: ignore[arg-type]
        workspace_id=row["workspace_id"], channel=c.CHANNEL_SMS, status=states.KIND_STATUS[kind],  # type: ignore[arg-type]
        carrier_result=stat, provider_message_id=row["provider_message_id"], to=row["address"],
        variant=row["variant"], attempt=row["attempt"], route=r.route or row["route"], parts=r.parts)
    ev.occurred_at.CopyFrom(r.occurred_at if r.occurred_at.seconds else to_ts(now))
    if kind != K.MESSAGE_EVENT_KIND_DELIVERED:
        ev.error_code = r.error_code
        ev.error_description = f"carrier receipt stat:{stat} err:{r.error_code or '-'} (matched by the ledger)"
        ev.failure_category = category  # type: ignore[assignment]
    return states.message_subject(kind), ev, key
