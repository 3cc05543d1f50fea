"""The NATS protocol as the lean client speaks it: fast subscriptions, raw writes, status
lines and header blocks.

nats-py hands each message to a subscription as a Msg object through an asyncio.Queue
and a task per subscription, and parses its headers into a dict first; for the gateways'
pull replies and publish acks that was ~8 µs per message (two or three per SMS/email).
A fast subscription's handler is called straight from the client's parser, synchronously,
with the raw subject, reply, payload and header block (the hook on nats-py's parser lives
in shared.adapters.nats_internals); other subscriptions take nats-py's usual path.

nats-py's publish validates, builds and queues each message on its own; cProfile of the
SMPP gateway (20,000 messages, 2 events + 1 ack each) put ~100 µs per message in
publish and publish_async. Callers here build the protocol lines themselves and queue them
in one call through the client's send buffer (shared.adapters.nats_internals.write: the
flusher, reconnect buffering and write limits stay nats-py's).
"""

from __future__ import annotations

from typing import Any

from nats.aio.client import Client as NATS

from shared.adapters import nats_internals
from shared.adapters.nats_internals import RawHandler


async def fast_subscribe(nc: NATS, subject: str, handler: RawHandler) -> Any:
    """Subscribe with a synchronous raw handler (see above); returns the Subscription."""
    table = nats_internals.raw_handlers(nc)
    sub = await nc.subscribe(subject)
    # no message can arrive before the SUB is flushed
    table[nats_internals.subscription_id(sub)] = handler
    return sub


async def fast_unsubscribe(nc: NATS, sub: Any) -> None:
    nats_internals.raw_handlers(nc).pop(nats_internals.subscription_id(sub), None)
    await sub.unsubscribe()


async def send_raw(nc: NATS, commands: list[bytes]) -> None:
    """Queue pre-built protocol commands on the connection, as publish() would."""
    if commands:
        await nats_internals.write(nc, b"".join(commands))


def status_line(headers: bytes | None) -> tuple[str, str]:
    """('404', 'No Messages') from b'NATS/1.0 404 No Messages\\r\\n...'; ('', '') if none."""
    if not headers or headers[8:9] != b" ":
        return "", ""
    line = headers[9:headers.find(b"\r\n")].decode(errors="replace")
    status, _, desc = line.partition(" ")
    return status, desc.strip()


def parse_headers(raw: bytes) -> dict[str, str]:
    """A NATS header block as nats-py gives it (Status/Description for an inline status)."""
    out: dict[str, str] = {}
    status, desc = status_line(raw)
    if status:
        out["Status"] = status
        if desc:
            out["Description"] = desc
    for line in raw.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip():
            out[name.strip().decode("ascii", "replace")] = value.strip().decode("utf-8", "replace")
    return out
