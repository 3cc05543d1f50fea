"""Building and publishing the gateway's events on EVENTS."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from datetime import datetime

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from nats.js import JetStreamContext

from shared import bus, states
from shared.timeutil import to_ts

_NS = uuid.UUID("4f1c2a52-61a4-4c57-9a0f-2b8f0b7c1e55")


_NS_SHA1 = hashlib.sha1(_NS.bytes)


def stable_event_id(nats_msg_id: str) -> str:
    """The same fact re-published (a redelivered job) keeps its event_id, so consumers
    de-duplicate it even after JetStream's 2-minute duplicate window.
    str(uuid.uuid5(_NS, id)) without the UUID object (5.7 -> 2.1 us measured here): SHA-1
    state after the namespace copied, version 5 and RFC 4122 variant bits set."""
    h = _NS_SHA1.copy()
    h.update(nats_msg_id.encode("utf-8"))
    # the bits set on the hex text (no bytearray): 3.1 -> 2.0 us measured
    x = h.hexdigest()
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}"


# hex digit -> the same digit with the RFC 4122 variant bits (10xx) set
_VARIANT = {f"{n:x}": f"{(n & 0x3) | 0x8:x}" for n in range(16)}
_urandom = os.urandom


def random_event_id() -> str:
    """str(uuid.uuid4()) without the UUID object (~5 -> ~1.5 us per tracking hit here)."""
    x = _urandom(16).hex()
    return f"{x[:8]}-{x[8:12]}-4{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:]}"


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
