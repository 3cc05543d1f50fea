"""Building and publishing the gateway's events on EVENTS."""

from __future__ import annotations

import time
import uuid
from datetime import datetime

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from nats.js import JetStreamContext

from shared import bus, ids, states
from shared.timeutil import to_ts

_NS = uuid.UUID("4f1c2a52-61a4-4c57-9a0f-2b8f0b7c1e55")


# The same fact re-published (a redelivered job) keeps its event_id, so consumers
# de-duplicate it even after JetStream's 2-minute duplicate window.
stable_event_id = ids.uuid5_text(_NS)
random_event_id = ids.uuid4_text


def message_event(kind: int, *, message_id: str, campaign_id: str = "", workspace_id: str = "",
                  event_id: str | None = None, occurred_at: datetime | None = None,
                  **fields: object) -> e.MessageEvent:
    ev = e.MessageEvent(
        event_id=event_id or random_event_id(), kind=kind, message_id=message_id,  # type: ignore[arg-type]
        campaign_id=campaign_id, workspace_id=workspace_id, channel=c.CHANNEL_EMAIL,
        status=states.KIND_STATUS.get(kind, c.MESSAGE_STATUS_UNSPECIFIED),  # type: ignore[arg-type]
        **fields,  # type: ignore[arg-type]
    )
    if occurred_at is not None:
        ev.occurred_at.CopyFrom(to_ts(occurred_at))
    else:  # Timestamp.GetCurrentTime goes through datetime; the fields directly do not
        ns = time.time_ns()
        ev.occurred_at.seconds, ev.occurred_at.nanos = divmod(ns, 1_000_000_000)
    return ev


async def publish_message_event(js: JetStreamContext, ev: e.MessageEvent, msg_id: str) -> None:
    await bus.publish(js, states.message_subject(ev.kind), ev, msg_id)
