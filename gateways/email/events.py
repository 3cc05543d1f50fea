"""Building and publishing the email gateway's events on EVENTS (tracking, bounces); job
outcomes go through the runtime's one builder (gateways.core.events)."""

from __future__ import annotations

from datetime import datetime

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from nats.js import JetStreamContext

from gateways.core import events as core_events
from shared import bus, states

stable_event_id = core_events.stable_event_id
random_event_id = core_events.random_event_id


def message_event(kind: int, *, message_id: str, campaign_id: str = "", workspace_id: str = "",
                  event_id: str | None = None, occurred_at: datetime | None = None,
                  **fields: object) -> e.MessageEvent:
    return core_events.message_event(
        kind, channel=c.CHANNEL_EMAIL, message_id=message_id, campaign_id=campaign_id,
        workspace_id=workspace_id, event_id=event_id, occurred_at=occurred_at, **fields)


async def publish_message_event(js: JetStreamContext, ev: e.MessageEvent, msg_id: str) -> None:
    await bus.publish(js, states.message_subject(ev.kind), ev, msg_id)
