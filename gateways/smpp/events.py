"""Events the SMPP gateway publishes, with deterministic ids.

A fact the gateway may publish more than once (a redelivered job, a receipt the SMSC sends
again) gets the same Nats-Msg-Id and the same event_id every time: JetStream drops the
copy inside its duplicate window, and consumers that de-duplicate on event_id drop it
after that.

`publish_many` sends a batch through shared.jsfast.Publisher (one write, one future for
the batch's acks) instead of one request/response round trip each, with the message events
of one kind in one bus message (shared.eventbatch); it returns only when every ack is in,
so callers still act only on stored events.
"""

from __future__ import annotations

import time
import uuid

from google.protobuf.message import Message as PbMessage
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from gateways.smpp import receipts
from gateways.smpp.store import Mapping
from shared import bus, eventbatch, ids, jsfast, states, timeutil

# The generated modules' top-level enum constants: EnumTypeWrapper attribute access
# (e.MessageEventKind.X) looks the name up on every use, ~3 µs each (measured).
K = e
_NAMESPACE = uuid.UUID("6f1c2b1e-8a5e-4e0b-9d7c-5d1f3a8b2c40")
PUBLISH_TIMEOUT = 10.0

Outgoing = tuple[str, PbMessage, str]  # subject, payload, Nats-Msg-Id
UNMATCHED_SUBJECT = "events.receipt.unmatched"


def event_key(message_id: str, fact: str, attempt: int) -> str:
    """'submitted' / 'failed' / 'dlr' fact of one attempt of one message."""
    return f"{message_id}:{fact}:{attempt}"


event_id = ids.uuid5_text(_NAMESPACE)  # str(uuid.uuid5(_NAMESPACE, key))


def build(kind: int, ident: Mapping, key: str, **fields: object) -> e.MessageEvent:
    ev = e.MessageEvent(
        event_id=event_id(key),
        kind=kind,  # type: ignore[arg-type]
        message_id=ident.message_id,
        campaign_id=ident.campaign_id,
        workspace_id=ident.workspace_id,
        channel=c.CHANNEL_SMS,
        status=states.KIND_STATUS.get(kind, c.MESSAGE_STATUS_UNSPECIFIED),  # type: ignore[arg-type]
        to=ident.to,
        variant=ident.variant,
        attempt=ident.attempt,
        route=ident.route,  # the SMPP route (ESME account) that carried it; "" if none did
        **fields,  # type: ignore[arg-type]
    )
    # Set in place: a Timestamp object passed as a keyword is built, then copied (~2 µs).
    ns = time.time_ns()
    ts = ev.occurred_at
    ts.seconds = ns // 1_000_000_000
    ts.nanos = ns % 1_000_000_000
    return ev


def message(kind: int, ident: Mapping, key: str, **fields: object) -> Outgoing:
    return states.message_subject(kind), build(kind, ident, key, **fields), key


def unmatched_receipt(route: str, smsc_id: str, source: str, stat: str, err: str) -> Outgoing:
    """events.receipt.unmatched: a final receipt the gateway's Redis map no longer knows
    (e.g. Redis lost its data). provider_ids has every reading of the id (as sent; the
    normalised one and its hex/decimal readings; upper-case hex as SMSCs print it in
    submit_sm_resp), so the ledger can find the message's provider_message_id. parts is 0:
    the map that knew it is gone. The event id comes from the route, the normalised id and
    the handset, so the SMSC's duplicates of one receipt publish one event."""
    readings = receipts.id_keys(smsc_id)
    ids = [smsc_id.strip(), *readings, *(k.upper() for k in readings if not k.isdigit())]
    key = f"unmatched:{route}:{readings[0]}:{receipts.number_digits(source) or source}"
    ev = e.UnmatchedReceipt(event_id=event_id(key), provider_ids=list(dict.fromkeys(i for i in ids if i)),
                            source_address=source, route=route, stat=stat, error_code=err, parts=0)
    ev.occurred_at.CopyFrom(timeutil.now_ts())
    return UNMATCHED_SUBJECT, ev, key


def opted_out(ident: Mapping, address: str, keyword: str, key: str) -> Outgoing:
    ev = e.ContactEvent(
        event_id=event_id(key), kind=e.CONTACT_EVENT_KIND_OPTED_OUT,
        workspace_id=ident.workspace_id, channel=c.CHANNEL_SMS, address=address,
        message_id=ident.message_id, campaign_id=ident.campaign_id, reason=keyword,
    )
    ev.occurred_at.CopyFrom(timeutil.now_ts())
    return "events.contact.opted_out", ev, key


async def publish_many(pub: jsfast.Publisher, items: list[Outgoing]) -> None:
    if not items:
        return
    # Message events of one kind go as one bus message (shared.eventbatch).
    await eventbatch.publish_many(pub, [(subject, pb.SerializeToString(), key)
                                        for subject, pb, key in items])
    bus.BUS_PUBLISHED.labels("events").inc(len(items))
