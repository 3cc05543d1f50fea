"""Message events in batches on the bus: one bus message per subject per batch.

A producer that publishes many message events at once packs them (`pack`): events of one
subject (events.message.<kind>) go out together as a MessageEventBatch with the header
`Herald-Payload: MessageEventBatch`, at most HERALD_EVENT_BATCH_MAX events and MAX_BYTES
each, so the server and every consumer handle one message, one ack and one delivery per
batch instead of per event. Consumers read any delivery with `events_of`: a batch or a
single MessageEvent (older producers, the low-volume publishers), both as a list.

The batch's bytes are the events' own serialized bytes, each framed as field 1 of
MessageEventBatch (tag, length, bytes): the events are not parsed or serialized again. Its
Nats-Msg-Id is derived from its events' ids, so publishing the same batch again (a retry)
is de-duplicated by JetStream; a batch made up differently is stored again and the
consumers de-duplicate its events by event_id, as they do for any event seen twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from herald.v1 import events_pb2 as e
from prometheus_client import Counter

from shared import bus, config

EVENT_BATCH_MAX = config.EVENT_BATCH_MAX

HEADER = "Herald-Payload"
BATCH = "MessageEventBatch"
HEADERS = {HEADER: BATCH}  # the batch's headers besides Nats-Msg-Id
PREFIX = "events.message."
MAX_BYTES = 512 * 1024  # of events in one batch (NATS' default max_payload is 1 MiB)

EVENT_BATCHES = Counter(
    "herald_bus_event_batches_total",
    "Bus messages published holding a batch of message events (their events count one by one "
    "in herald_bus_published_total).")

Item = tuple[str, bytes, str]  # subject, serialized payload, Nats-Msg-Id
Packed = tuple[str, bytes, str] | tuple[str, bytes, str, dict[str, str]]  # + headers


def batch_max() -> int:
    n = EVENT_BATCH_MAX.get_int()
    if n < 1:
        raise ValueError(f"{EVENT_BATCH_MAX.name}={n} must be 1 or more")
    return n


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def batch_id(msg_ids: Sequence[str]) -> str:
    """A batch's Nats-Msg-Id: the same events make the same id, in whatever order (a build
    resumed after a crash announces its rows in id order, the first pass in audience order)."""
    digest = hashlib.blake2b("\n".join(sorted(msg_ids)).encode(), digest_size=16).hexdigest()
    return f"batch:{digest}"


class _Open:
    """A batch being filled: its events' framed bytes and ids."""

    __slots__ = ("subject", "parts", "payloads", "ids", "size")

    def __init__(self, subject: str) -> None:
        self.subject = subject
        self.parts: list[bytes] = []
        self.payloads: list[bytes] = []
        self.ids: list[str] = []
        self.size = 0

    def add(self, payload: bytes, msg_id: str) -> None:
        head = b"\n" + _varint(len(payload))  # 0x0A: field 1, length-delimited
        self.parts.append(head)
        self.parts.append(payload)
        self.payloads.append(payload)
        self.ids.append(msg_id)
        self.size += len(head) + len(payload)

    def item(self) -> Packed:
        if len(self.ids) == 1:  # alone: a plain event, its own id (as a release before batches)
            return self.subject, self.payloads[0], self.ids[0]
        return self.subject, b"".join(self.parts), batch_id(self.ids), HEADERS


def pack(items: Sequence[Item], max_events: int | None = None,
         max_bytes: int = MAX_BYTES) -> list[Packed]:
    """The bus messages for `items`: message events grouped by subject into batches (each
    where its first event was), everything else passed through in place. An event larger
    than max_bytes goes alone."""
    n = batch_max() if max_events is None else max_events
    if n <= 1 or len(items) < 2:
        return list(items)
    out: list[Any] = []
    open_: dict[str, _Open] = {}
    for item in items:
        subject = item[0]
        if not subject.startswith(PREFIX):
            out.append(item)
            continue
        payload = item[1]
        b = open_.get(subject)
        if b is None or len(b.ids) >= n or (b.ids and b.size + len(payload) + 6 > max_bytes):
            b = open_[subject] = _Open(subject)
            out.append(b)
        b.add(payload, item[2])
    return [x.item() if isinstance(x, _Open) else x for x in out]


async def publish_many(publisher: Any, items: Sequence[Item]) -> None:
    """Pack `items` and publish them with a shared.jsfast.Publisher (returns once every bus
    message is stored; raises as its publish_many does). A batch stays well under the
    server's max_payload."""
    nc = getattr(publisher, "nc", None)
    limit = getattr(nc, "max_payload", 0) or 2 * MAX_BYTES
    packed = pack(items, max_bytes=min(MAX_BYTES, limit // 2))
    await publisher.publish_many(packed)
    batches = sum(1 for p in packed if len(p) == 4)
    if batches:
        EVENT_BATCHES.inc(batches)


def is_batch(msg: Any) -> bool:
    headers = msg.headers
    return bool(headers) and headers.get(HEADER) == BATCH


def events_of(msg: Any) -> list[e.MessageEvent]:
    """A delivered message's events (a nats-py Msg or a shared.jsfast.JsMsg): a batch's, or
    the one event. Raises bus.PermanentError for a payload that is neither."""
    if not is_batch(msg):
        return [bus.parse(msg, e.MessageEvent)]
    try:
        return list(e.MessageEventBatch.FromString(msg.data).events)
    except Exception as exc:
        raise bus.PermanentError(f"{msg.subject}: not a {BATCH}: {exc}") from exc
