"""A lean JetStream client for the gateways' hot paths.

nats-py's `PullSubscription.fetch` sends a pull request per call, then waits for every
message with its own `asyncio.wait_for` (a task and timer each), and its messages parse
their metadata into dataclasses. Here pull requests go to the stream's
`$JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>` API with {"batch", "expires"} on ONE
wildcard reply subscription whose callback only buffers; requests are kept ahead of the
reader (prefetch) so the next batch is already on the socket when the last is handled.

Per message the cost is one buffered object and one raw ack publish (+ACK, -NAK with an
optional {"delay": ns}, +TERM: the same bytes nats-py's Msg.ack/nak/term send).

Measured (bench, alternating runs against nats-py's own consumer, --email-consumer both):
the email gateway went from 2,074 to 2,600 emails/s and from 457 to 369 µs of gateway
CPU per email; outcome events through Publisher.publish_many from 32-40 to 18-23 µs of
client CPU per event. nats-py's private internals it needs are all in
shared.adapters.nats_internals (checked at every process's start-up).

Modules:
  message    JsMsg (a delivered message with raw acks), its ack subject's Metadata, the
             settlement payloads and `settle_many` (many acks in one write)
  pull       PullConsumer: prefetching durable pull consumer
  publisher  Publisher: JetStream publishes acknowledged per batch (one future each)
  wire       fast subscriptions (handlers called from the client's parser), raw writes,
             status lines and header blocks
"""

from shared.jsfast.message import JsMsg, Metadata, nak_payload, settle_many
from shared.jsfast.publisher import Publisher, PublishError
from shared.jsfast.pull import PullConsumer
from shared.jsfast.wire import (
    fast_subscribe,
    fast_unsubscribe,
    parse_headers,
    send_raw,
    status_line,
)

__all__ = [
    "JsMsg", "Metadata", "PublishError", "Publisher", "PullConsumer", "fast_subscribe",
    "fast_unsubscribe", "nak_payload", "parse_headers", "send_raw", "settle_many", "status_line",
]
