"""The prefetching durable pull consumer of the lean JetStream client.

Pull requests go to the stream's `$JS.API.CONSUMER.MSG.NEXT.<stream>.<durable>` API with
{"batch", "expires"} on ONE wildcard reply subscription (a fast subscription: its callback
only buffers); requests are kept ahead of the reader (prefetch) so the next batch is
already on the socket when the last is handled.

Status replies end a request: 404 (no messages, no_wait), 408 (request expired), 409
(server-side limit, consumer deleted, leadership change), 503 (no responders: JetStream
not there yet). 100 is an idle heartbeat that keeps a request alive. A request whose
server reply never comes (lost to a disconnect) is dropped after its expiry plus a grace
period; a reconnect drops all of them at once and the pull is re-issued.
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

from shared.jsfast.message import NAK, JsMsg, settle_many
from shared.jsfast.wire import fast_subscribe, fast_unsubscribe, status_line

log = logging.getLogger("herald.jsfast")

_GRACE = 1.0  # seconds past a request's expiry before it counts as lost


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
                await settle_many(left, NAK)
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
