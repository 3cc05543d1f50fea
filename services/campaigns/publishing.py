"""Publishing the campaigns service's jobs and events in batches: one write for a whole batch
and one wait for all of its JetStream acks (shared.jsfast.Publisher), instead of a request,
an inbox and a future per message (which cost the dispatcher and the build more CPU than
everything else they do per message). Message events of one kind go as one bus message
(shared.eventbatch)."""

from __future__ import annotations

from google.protobuf.message import Message as PbMessage
from nats.errors import MaxPayloadError
from nats.js import JetStreamContext

from shared import bus, eventbatch, jsfast
from shared.adapters import nats_internals

PUBLISH_TIMEOUT = 10.0  # seconds for a batch's acks; a batch that timed out is safe to resend


class BatchPublisher:
    """publish_many(items) returns once JetStream has stored (or de-duplicated, by
    Nats-Msg-Id) every message; raises MaxPayloadError before sending anything over the
    server's payload limit, PublishError / TimeoutError otherwise."""

    def __init__(self, js: JetStreamContext, timeout: float = PUBLISH_TIMEOUT) -> None:
        self.js = js
        self.timeout = timeout
        self._pub: jsfast.Publisher | None = None

    async def publish_many(self, items: list[tuple[str, PbMessage | bytes, str]]) -> None:
        """items: (subject, message or its serialized bytes, Nats-Msg-Id)."""
        if not items:
            return
        nc = nats_internals.connection_of(self.js)
        if self._pub is None or self._pub.nc is not nc:
            self._pub = jsfast.Publisher(nc, timeout=self.timeout)
        raw = [(subject, msg if isinstance(msg, bytes) else msg.SerializeToString(), msg_id)
               for subject, msg, msg_id in items]
        limit = nc.max_payload
        if any(len(data) > limit for _s, data, _m in raw):
            raise MaxPayloadError
        # Message events of one kind in one bus message (shared.eventbatch); jobs as they are.
        await eventbatch.publish_many(self._pub, raw)
        streams: dict[str, int] = {}
        for subject, _data, _m in raw:
            stream = subject.split(".", 1)[0]
            streams[stream] = streams.get(stream, 0) + 1
        for stream, n in streams.items():
            bus.BUS_PUBLISHED.labels(stream).inc(n)

    async def close(self) -> None:
        if self._pub is not None:
            await self._pub.close()
            self._pub = None
