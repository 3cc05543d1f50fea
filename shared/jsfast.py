"""A lean JetStream pull consumer for the gateways' hot paths.

nats-py's `PullSubscription.fetch` sends a pull request per call, then waits for every
message with its own `asyncio.wait_for` (a task and timer each), and its messages parse
their metadata into dataclasses. Here pull requests go to the stream's
`$JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>` API with {"batch", "expires"} on ONE
wildcard reply subscription whose callback only buffers; requests are kept ahead of the
reader (prefetch) so the next batch is already on the socket when the last is handled.

Per message the cost is one buffered object and one raw ack publish (+ACK, -NAK with an
optional {"delay": ns}, +TERM: the same bytes nats-py's Msg.ack/nak/term send).

Status replies end a request: 404 (no messages, no_wait), 408 (request expired), 409
(server-side limit, consumer deleted, leadership change), 503 (no responders: JetStream
not there yet). 100 is an idle heartbeat that keeps a request alive. A request whose
server reply never comes (lost to a disconnect) is dropped after its expiry plus a grace
period; a reconnect drops all of them at once and the pull is re-issued.

Measured (bench, alternating runs against nats-py's own consumer, --email-consumer both):
the email gateway went from 2,074 to 2,600 emails/s and from 457 to 369 µs of gateway
CPU per email; outcome events through Publisher.publish_many from 32-40 to 18-23 µs of
client CPU per event. nats-py's private internals it needs are all in
shared.adapters.nats_internals (checked at every process's start-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from typing import Any

from nats.aio.client import Client as NATS
from nats.js.api import ConsumerConfig
from nats.js.errors import NotFoundError

from shared.adapters import nats_internals
from shared.adapters.nats_internals import RawHandler

log = logging.getLogger("herald.jsfast")

_ACK = b"+ACK"
_NAK = b"-NAK"
_TERM = b"+TERM"
_WPI = b"+WPI"
_GRACE = 1.0  # seconds past a request's expiry before it counts as lost


class Metadata:
    """The ack subject's fields, parsed once on demand:
    $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending> or the v2 form
    $JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>...
    """

    __slots__ = ("stream", "consumer", "num_delivered", "stream_seq", "consumer_seq",
                 "timestamp_ns", "num_pending")

    def __init__(self, reply: str) -> None:
        t = reply.split(".")
        if len(t) == 9:
            t = t[2:]
        elif len(t) >= 11:
            t = t[4:11]
        else:
            raise ValueError(f"not a JetStream ack subject: {reply!r}")
        self.stream, self.consumer = t[0], t[1]
        self.num_delivered, self.stream_seq, self.consumer_seq = int(t[2]), int(t[3]), int(t[4])
        self.timestamp_ns, self.num_pending = int(t[5]), int(t[6])


class JsMsg:
    """A delivered JetStream message with explicit, raw acks."""

    __slots__ = ("_nc", "subject", "reply", "data", "_raw_headers", "_headers", "_meta", "_acked")

    def __init__(self, nc: NATS, subject: str, reply: str, data: bytes,
                 headers: dict[str, str] | bytes | None) -> None:
        self._nc = nc
        self.subject = subject
        self.reply = reply
        self.data = data
        self._raw_headers = headers if isinstance(headers, bytes) else None
        self._headers = headers if isinstance(headers, dict) else None
        self._meta: Metadata | None = None
        self._acked = False

    @property
    def headers(self) -> dict[str, str] | None:
        """Parsed on first use (the gateways never read them)."""
        if self._headers is None and self._raw_headers:
            self._headers = parse_headers(self._raw_headers)
        return self._headers

    @property
    def metadata(self) -> Metadata:
        if self._meta is None:
            self._meta = Metadata(self.reply)
        return self._meta

    @property
    def num_delivered(self) -> int:
        return self.metadata.num_delivered

    @property
    def nc(self) -> NATS:
        """The connection the message came on (and its acks go out on)."""
        return self._nc

    @property
    def settled(self) -> bool:
        """Acked, nak'ed or terminated already (by this process)."""
        return self._acked

    def claim_settlement(self) -> bool:
        """Mark as settled; False if it already was (for writers of raw acks)."""
        if self._acked:
            return False
        self._acked = True
        return True

    async def _settle(self, payload: bytes) -> None:
        if self._acked:  # a second settlement would only confuse the server's count
            return
        self._acked = True
        await self._nc.publish(self.reply, payload)

    async def ack(self) -> None:
        await self._settle(_ACK)

    async def nak(self, delay: float | None = None) -> None:
        if delay:
            await self._settle(b'-NAK {"delay": %d}' % int(delay * 1_000_000_000))
        else:
            await self._settle(_NAK)

    async def term(self) -> None:
        await self._settle(_TERM)

    async def in_progress(self) -> None:
        """Reset the ack_wait timer; may be sent many times before the final ack."""
        if not self._acked:
            await self._nc.publish(self.reply, _WPI)


class _Request:
    __slots__ = ("remaining", "deadline")

    def __init__(self, remaining: int, deadline: float) -> None:
        self.remaining = remaining
        self.deadline = deadline


class PullConsumer:
    """Durable pull consumer: `await start()`, then `await fetch(n, timeout)` in a loop.

    Up to `batch * prefetch` messages are requested ahead of the reader; they are
    delivered (their ack_wait runs) while buffered, so keep that well below what the
    reader handles within ack_wait. prefetch=0 requests only while the reader waits.
    """

    def __init__(self, nc: NATS, stream: str, durable: str, *,
                 config: ConsumerConfig | None = None, batch: int = 128, prefetch: int = 2,
                 expires: float = 2.0, heartbeat: float = 0.0, linger: float = 0.005) -> None:
        if heartbeat and heartbeat * 2 > expires:
            raise ValueError("heartbeat must be at most half of expires")
        self.nc = nc
        self.stream = stream
        self.durable = durable
        self.config = config
        self.batch = max(int(batch), 1)
        self.prefetch = max(int(prefetch), 0)
        self.expires = expires
        self.heartbeat = heartbeat
        self.linger = linger  # wait this long for the rest of a partly arrived batch
        self._api = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._buf: deque[JsMsg] = deque()
        self._reqs: dict[str, _Request] = {}
        self._credit = 0  # messages requested and not yet delivered or expired
        self._next = 0
        self._prefix = ""
        self._sub: Any = None
        self._waiter: asyncio.Future[None] | None = None
        self._want = 1  # buffered messages that wake the reader
        self._reconnects = 0
        self._ensure = False  # the consumer went away: create it again before pulling
        self._backoff_until = 0.0
        self._pulls: set[asyncio.Future[None]] = set()
        self.stats = {"requests": 0, "delivered": 0, "statuses": 0, "lost": 0}

    # --- setup --------------------------------------------------------------------
    async def start(self) -> None:
        await self._ensure_consumer()
        inbox = self.nc.new_inbox()
        self._prefix = inbox + "."
        self._sub = await fast_subscribe(self.nc, inbox + ".*", self._on_raw)
        self._reconnects = self.nc.stats["reconnects"]
        await self._pull()

    async def _ensure_consumer(self) -> None:
        js = self.nc.jetstream()
        try:
            await js.consumer_info(self.stream, self.durable)
            return
        except NotFoundError:
            pass
        cfg = self.config or ConsumerConfig()
        cfg.durable_name = self.durable
        try:
            await js.add_consumer(self.stream, cfg)
        except Exception:  # another process created it between our two calls
            await js.consumer_info(self.stream, self.durable)

    async def close(self, nak_buffered: bool = False) -> None:
        """Stop receiving; buffered messages are redelivered after ack_wait, or at once
        with nak_buffered (they were delivered to us but never handed out)."""
        if nak_buffered and self._buf:
            left = list(self._buf)
            self._buf.clear()
            with contextlib.suppress(Exception):
                await settle_many(left, _NAK)
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await fast_unsubscribe(self.nc, self._sub)
            self._sub = None
        self._reqs.clear()
        self._credit = 0
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # --- pulling ------------------------------------------------------------------
    async def _pull(self) -> None:
        """Keep batch * prefetch messages buffered or requested."""
        if self._sub is None or self._ensure or self.nc.is_closed:
            return
        need = self.batch * max(self.prefetch, 1) - len(self._buf) - self._credit
        if need <= 0 or (need < self.batch and self._reqs):
            return  # top up in whole batches: fewer, larger requests
        if time.monotonic() < self._backoff_until:
            return
        self._next += 1
        token = str(self._next)
        req: dict[str, int] = {"batch": need, "expires": int(self.expires * 1_000_000_000)}
        if self.heartbeat:
            req["idle_heartbeat"] = int(self.heartbeat * 1_000_000_000)
        self._reqs[token] = _Request(need, time.monotonic() + self.expires + _GRACE)
        self._credit += need
        self.stats["requests"] += 1
        try:
            await self.nc.publish(self._api, json.dumps(req).encode(), reply=self._prefix + token)
        except Exception as exc:  # closed or draining connection: housekeeping retries
            log.warning("pull request failed: %s", exc, extra={"consumer": self.durable})
            self._end(token)

    def _end(self, token: str) -> None:
        req = self._reqs.pop(token, None)
        if req is not None:
            self._credit -= req.remaining

    def _on_raw(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        if reply:  # a message: its reply subject is the ack subject
            self._buf.append(JsMsg(self.nc, subject.decode(), reply.decode(), data, headers))
            self.stats["delivered"] += 1
            # A message arrives under its own subject, not the request's inbox token; the
            # server serves one client's waiting requests in order, so it counts against
            # the oldest (a wrong guess only lasts until that request's deadline).
            if self._reqs:
                first = next(iter(self._reqs))
                req = self._reqs[first]
                req.remaining -= 1
                self._credit -= 1
                if req.remaining <= 0:
                    del self._reqs[first]
            waiter = self._waiter
            if waiter is not None and not waiter.done() and (
                    len(self._buf) >= self._want or not self._reqs):
                waiter.set_result(None)
            return
        # Status messages come on the request's inbox token, without a payload.
        token = subject[len(self._prefix):].decode()
        status, desc = status_line(headers)
        self.stats["statuses"] += 1
        if status == "100":  # idle heartbeat: the request is still alive server-side
            req = self._reqs.get(token)
            if req is not None:
                req.deadline = time.monotonic() + max(self.heartbeat * 2, _GRACE)
            return
        self._end(token)
        if status in ("404", "408"):
            pass  # nothing (more) for this request
        elif status == "409":
            if "deleted" in desc.lower():
                self._ensure = True
            if "Leadership" not in desc:
                log.warning("pull request refused: %s", desc, extra={"consumer": self.durable})
            self._backoff_until = time.monotonic() + 0.25
        elif status == "503":  # no JetStream responders (server starting, stream moving)
            self._backoff_until = time.monotonic() + 0.5
        else:
            log.warning("unexpected pull status %s %s", status, desc, extra={"consumer": self.durable})
        if (status != "409" or not self._ensure) and (self.prefetch or self._waiter is not None):
            task = asyncio.ensure_future(self._pull())
            self._pulls.add(task)
            task.add_done_callback(self._pulls.discard)
        waiter = self._waiter  # wake the reader so it re-checks (consumer deleted, back-off)
        if self._ensure and waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _housekeeping(self) -> None:
        reconnects = self.nc.stats["reconnects"]
        if reconnects != self._reconnects:
            # Requests made on the old connection may be gone with it: ask again.
            self._reconnects = reconnects
            self.stats["lost"] += len(self._reqs)
            self._reqs.clear()
            self._credit = 0
        elif self._reqs:
            now = time.monotonic()
            for token in [t for t, r in self._reqs.items() if r.deadline < now]:
                self.stats["lost"] += 1
                self._end(token)
        if self._ensure and self.nc.is_connected:
            try:
                await self._ensure_consumer()
                self._ensure = False
            except Exception as exc:
                log.warning("consumer %s not ready: %s", self.durable, exc)
                self._backoff_until = time.monotonic() + 0.5
        await self._pull()

    async def fetch(self, max_msgs: int | None = None, timeout: float = 0.5) -> list[JsMsg]:
        """Up to max_msgs (default: batch) messages, like nats-py's fetch: waits at most
        `timeout`, returning early once max_msgs are buffered or no request is waiting
        server-side (a partial batch); [] if none came (no exception when idle)."""
        n = max_msgs or self.batch
        if not self._buf:
            await self._housekeeping()
        if not self._buf and self._sub is not None:
            await self._wait(1, timeout)
        if self._buf and len(self._buf) < n and self._reqs and self.linger > 0:
            # The rest of a batch is usually a moment behind its first message; full
            # batches amortise the reader's per-batch work (e.g. Redis round trips).
            await self._wait(n, self.linger)
        if not self._buf:
            await self._housekeeping()
            return []
        out = self._take(n)
        if self.prefetch:
            await self._pull()
        return out

    async def _wait(self, want: int, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        self._want = want
        timer = loop.call_later(timeout, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _take(self, n: int) -> list[JsMsg]:
        buf = self._buf
        if len(buf) <= n:
            out = list(buf)
            buf.clear()
        else:
            out = [buf.popleft() for _ in range(n)]
        return out


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


# --- fast subscriptions ------------------------------------------------------------
# nats-py hands each message to a subscription as a Msg object through an asyncio.Queue
# and a task per subscription, and parses its headers into a dict first; for the gateways'
# pull replies and publish acks that was ~8 µs per message (two or three per SMS/email).
# A fast subscription's handler is called straight from the client's parser, synchronously,
# with the raw subject, reply, payload and header block (the hook on nats-py's parser lives
# in shared.adapters.nats_internals); other subscriptions take nats-py's usual path.

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


# --- raw writes: acks in bulk, JetStream publishes with one future per batch -------------
# nats-py's publish validates, builds and queues each message on its own and its
# JetStream publish_async adds a future, a NUID inbox and a parsed PubAck per message;
# cProfile of the SMPP gateway (20,000 messages, 2 events + 1 ack each) put ~100 µs per
# message there. These helpers build the protocol lines themselves and queue them in one
# call through the client's send buffer (shared.adapters.nats_internals.write: the
# flusher, reconnect buffering and write limits stay nats-py's).


class PublishError(Exception):
    """JetStream refused (or never acknowledged) some of the messages of a batch."""


async def send_raw(nc: NATS, commands: list[bytes]) -> None:
    """Queue pre-built protocol commands on the connection, as publish() would."""
    if commands:
        await nats_internals.write(nc, b"".join(commands))


async def settle_many(msgs: list[JsMsg], payload: bytes = _ACK) -> None:
    """Ack (or +TERM / -NAK with `payload`) many messages with one write."""
    if not msgs:
        return
    cmds = [b"PUB %s %d\r\n%s\r\n" % (m.reply.encode(), len(payload), payload)
            for m in msgs if m.claim_settlement()]
    await send_raw(msgs[0].nc, cmds)


def nak_payload(delay: float | None) -> bytes:
    return b'-NAK {"delay": %d}' % int(delay * 1_000_000_000) if delay else _NAK


class _Batch:
    __slots__ = ("remaining", "future", "errors")

    def __init__(self, remaining: int, future: asyncio.Future[None]) -> None:
        self.remaining = remaining
        self.future = future
        self.errors: list[str] = []


class Publisher:
    """JetStream publishes with Nats-Msg-Id, acknowledged per batch: `publish_many`
    returns once the server has stored (or de-duplicated) every message, and raises
    PublishError / TimeoutError otherwise (safe to retry: the ids de-duplicate)."""

    def __init__(self, nc: NATS, timeout: float = 10.0) -> None:
        self.nc = nc
        self.timeout = timeout
        self._prefix = b""
        self._plen = 0
        self._n = 0
        self._waiting: dict[bytes, _Batch] = {}
        self._sub: Any = None

    async def start(self) -> Publisher:
        if self._sub is None:
            inbox = self.nc.new_inbox()
            self._prefix = (inbox + ".").encode()
            self._plen = len(self._prefix)
            self._sub = await fast_subscribe(self.nc, inbox + ".*", self._on_ack)
        return self

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await fast_unsubscribe(self.nc, self._sub)
            self._sub = None

    def _on_ack(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        batch = self._waiting.pop(subject[self._plen:], None)
        if batch is None:
            return  # timed out already
        if not data:  # a status message, e.g. 503: no JetStream stream for the subject
            status, desc = status_line(headers)
            batch.errors.append(f"{status or '?'} {desc or 'no responders'}")
        elif b'"error"' in data:
            batch.errors.append(data.decode(errors="replace"))
        batch.remaining -= 1
        if batch.remaining <= 0 and not batch.future.done():
            batch.future.set_result(None)

    async def publish_many(self, items: list[tuple[str, bytes, str]]) -> None:
        """items: (subject, payload, Nats-Msg-Id)."""
        if not items:
            return
        if self._sub is None:
            await self.start()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        batch = _Batch(len(items), fut)
        waiting = self._waiting
        prefix = self._prefix
        tokens: list[bytes] = []
        cmds: list[bytes] = []
        n = self._n
        for subject, payload, msg_id in items:
            if "\r" in msg_id or "\n" in msg_id:
                raise ValueError(f"message id with a line break: {msg_id!r}")
            n += 1
            token = b"%x" % n
            tokens.append(token)
            waiting[token] = batch
            hdr = b"NATS/1.0\r\nNats-Msg-Id: %s\r\n\r\n" % msg_id.encode()
            cmds.append(b"HPUB %s %s%s %d %d\r\n%s%s\r\n" % (
                subject.encode(), prefix, token, len(hdr), len(hdr) + len(payload),
                hdr, payload))
        self._n = n
        try:
            await send_raw(self.nc, cmds)
            async with asyncio.timeout(self.timeout):
                await fut
        finally:
            if batch.remaining > 0:  # timed out or failed to send: forget the tokens
                for t in tokens:
                    waiting.pop(t, None)
        if batch.errors:
            raise PublishError(f"{len(batch.errors)} of {len(items)} not stored: {batch.errors[0]}")
