"""MessageEvents the SMPP gateway publishes, with deterministic ids.

A fact the gateway may publish more than once (a redelivered job, a receipt the SMSC sends
again) gets the same Nats-Msg-Id and the same event_id every time: JetStream drops the
copy inside its duplicate window, and consumers that de-duplicate on event_id drop it
after that.
"""

from __future__ import annotations

import uuid

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from nats.js import JetStreamContext

from gateways.smpp.store import Mapping
from shared import bus, states, timeutil

K = e.MessageEventKind
_NAMESPACE = uuid.UUID("6f1c2b1e-8a5e-4e0b-9d7c-5d1f3a8b2c40")


def event_key(message_id: str, fact: str, attempt: int) -> str:
    """'submitted' / 'failed' / 'dlr' fact of one attempt of one message."""
    return f"{message_id}:{fact}:{attempt}"


def build(kind: int, ident: Mapping, key: str, **fields: object) -> e.MessageEvent:
    ev = e.MessageEvent(
        event_id=str(uuid.uuid5(_NAMESPACE, key)),
        kind=kind,  # type: ignore[arg-type]
        message_id=ident.message_id,
        campaign_id=ident.campaign_id,
        workspace_id=ident.workspace_id,
        channel=c.CHANNEL_SMS,
        status=states.KIND_STATUS.get(kind, c.MESSAGE_STATUS_UNSPECIFIED),  # type: ignore[arg-type]
        to=ident.to,
        variant=ident.variant,
        attempt=ident.attempt,
        **fields,  # type: ignore[arg-type]
    )
    ev.occurred_at.CopyFrom(timeutil.now_ts())
    return ev


async def publish(js: JetStreamContext, kind: int, ident: Mapping, key: str, **fields: object) -> None:
    await bus.publish(js, states.message_subject(kind), build(kind, ident, key, **fields), key)
