"""nats-py's private internals that shared.jsfast builds on, and nothing else.

Relied on (checked by `self_check`):
- `Client._process_msg(sid, subject, reply, data, headers)`: the protocol parser awaits it
  for every MSG/HMSG with the raw bytes; wrapped once per connection so that a fast
  subscription's handler is called straight from the parser (see `raw_handlers`).
- `Client._send_command(cmd)`, `Client._flush_queue` and `Client._flush_pending()`: the
  send buffer behind `publish()`; the flusher, reconnect buffering and write limits stay
  nats-py's (see `write`).
- `Subscription._id`: the sid the parser passes to `_process_msg`.
- `JetStreamContext._nc`: the connection of a JetStream context.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription
from nats.errors import ConnectionClosedError
from nats.js import JetStreamContext
from nats.protocol.parser import Parser

from shared.adapters import AdapterError

log = logging.getLogger("herald.jsfast")

DIST = "nats-py"

# (subject, reply, payload, header block or None), called synchronously from the parser
RawHandler = Callable[[bytes, bytes, bytes, "bytes | None"], None]

_TABLE = "_herald_fast"  # the per-connection dispatch table, kept in the client's __dict__


def connection_of(js: JetStreamContext) -> NATS:
    """The client a JetStream context publishes and subscribes through."""
    return js._nc


def subscription_id(sub: Subscription) -> int:
    """The sid the server's MSG lines carry for this subscription."""
    return sub._id


def raw_handlers(nc: NATS) -> dict[int, RawHandler]:
    """The connection's table sid -> raw handler; installs the parser hook on first use.
    A message whose sid is in the table goes to its handler (the client's in_msgs/in_bytes
    still counted); any other takes nats-py's usual path."""
    table: dict[int, RawHandler] | None = nc.__dict__.get(_TABLE)
    if table is not None:
        return table
    table = {}
    usual = nc._process_msg
    stats = nc.stats
    handlers = table

    async def process_msg(sid: int, subject: bytes, reply: bytes, data: bytes,
                          headers: bytes | None) -> None:
        handler = handlers.get(sid)
        if handler is None:
            await usual(sid, subject, reply, data, headers)
            return
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        try:
            handler(subject, reply, data, headers)
        except Exception:  # never break the client's read loop
            log.exception("fast subscription handler failed")

    nc._process_msg = process_msg  # type: ignore[method-assign]
    nc.__dict__[_TABLE] = table
    return table


async def write(nc: NATS, data: bytes) -> None:
    """Queue pre-built protocol bytes on the connection, exactly as publish() queues its
    command: into the send buffer, kicking the flusher if it is idle."""
    if nc.is_closed:
        raise ConnectionClosedError
    await nc._send_command(data)
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()


# --- self-check ----------------------------------------------------------------------

def _fail(what: str) -> AdapterError:
    return AdapterError(DIST, what)


def _run(coro: Coroutine[Any, Any, Any], what: str) -> Any:
    """Drive a coroutine that must finish without suspending (no I/O, no loop needed)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise _fail(f"{what} suspended where it used to complete at once")


def _params(fn: Any) -> list[str]:
    return list(inspect.signature(fn).parameters)


def self_check() -> None:
    """Verify every private member above exists and behaves, on a client that is not
    connected: the parser delivers MSG and HMSG through the hook with the raw bytes, the
    write path queues bytes in the send buffer, sid and context connection read back."""
    for name, want in (("_process_msg", ["self", "sid", "subject", "reply", "data", "headers"]),
                       ("_send_command", ["self", "cmd", "priority"]),
                       ("_flush_pending", ["self", "force_flush"])):
        fn = getattr(NATS, name, None)
        if fn is None or not inspect.iscoroutinefunction(fn):
            raise _fail(f"Client.{name} is gone or no longer a coroutine function")
        if _params(fn) != want:
            raise _fail(f"Client.{name} now takes {_params(fn)}, expected {want}")
    nc = NATS()
    if "_flush_queue" not in vars(nc):
        raise _fail("Client._flush_queue is gone")
    if connection_of(nc.jetstream()) is not nc:
        raise _fail("JetStreamContext._nc no longer holds the context's connection")
    try:
        sid = subscription_id(Subscription(nc, id=7, subject="check"))
    except (AttributeError, TypeError) as exc:
        raise _fail(f"Subscription(conn, id=...)._id: {exc}") from exc
    if sid != 7:
        raise _fail(f"Subscription._id is {sid!r}, expected the sid 7")

    got: list[tuple[bytes, bytes, bytes, bytes | None]] = []
    raw_handlers(nc)[7] = lambda *a: got.append(a)
    parser = Parser(nc)
    _run(parser.parse(b"MSG a.b 7 r.s 2\r\nhi\r\nHMSG a.c 7 12 14\r\nNATS/1.0\r\n\r\nhi\r\n"),
         "Parser.parse")
    want = [(b"a.b", b"r.s", b"hi", None), (b"a.c", b"", b"hi", b"NATS/1.0\r\n\r\n")]
    if got != want:
        raise _fail(f"the parser hook (Client._process_msg) delivered {got!r}, expected {want!r}")
    if nc.stats["in_msgs"] != 2:
        raise _fail("the parser no longer reaches Client._process_msg for every message")

    _run(write(nc, b"PING\r\n"), "Client._send_command")
    pending = getattr(nc, "_pending", None)
    if not pending or pending[-1] != b"PING\r\n":
        raise _fail("Client._send_command no longer queues bytes in the send buffer")
