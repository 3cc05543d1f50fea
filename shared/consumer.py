"""The one JetStream pull consumer: a durable, a batch handler, one verdict per message.

    consumer = Consumer(js, Durable(bus.EVENTS_STREAM, "stats", "events.message.>"), handle)
    await consumer.run(stop)

`handle(msgs)` gets a batch of shared.jsfast.JsMsg and returns one Verdict per message (ACK,
NAK(delay) or TERM), a single Verdict for the whole batch, or None (= ACK all). Verdicts are
written in one bulk write per kind. A message the handler settled itself (msg.ack(), ...) keeps
that settlement: its verdict is skipped. A handler that raises gets its whole (unsettled) batch
nak'ed after `error_delay` seconds and the failure logged; a handler that runs longer than half
the durable's ack_wait keeps its messages alive with in-progress acks (+WPI).

Batches are handled in order, one at a time, unless `concurrency` > 1 (then up to that many
batch handlers run as tasks, capped by `max_in_flight` messages). Fetching stops when `stop`
is set: buffered messages never handed out are nak'ed (redelivered at once), batches in hand
finish (for at most `drain_timeout` seconds; what is left then is nak'ed). The durable's lag
is exported (shared.bus.watch_lag) while the consumer runs.

An idle fetch is normal and silent; any other fetch failure is logged with its cause and
retried after a pause. Reconnecting is the NATS client's (shared.bus.connect: unbounded).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from nats.aio.client import Client as NATS
from nats.errors import ConnectionClosedError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig

from shared import bus, jsfast
from shared.adapters import nats_internals
from shared.jsfast import JsMsg

log = logging.getLogger("herald.consumer")

FETCH_TIMEOUT = 0.5  # seconds an idle fetch waits: how soon a stop is noticed
ERROR_PAUSE = 0.5  # seconds between a failed fetch and the next


class Verdict:
    """What becomes of one message: its kind ("ack", "nak", "term") and the bytes sent."""

    __slots__ = ("kind", "delay", "payload")

    def __init__(self, kind: str, delay: float, payload: bytes) -> None:
        self.kind, self.delay, self.payload = kind, delay, payload

    def __repr__(self) -> str:
        return f"NAK({self.delay:g})" if self.kind == "nak" else self.kind.upper()


ACK = Verdict("ack", 0.0, b"+ACK")
TERM = Verdict("term", 0.0, b"+TERM")
_NAKS: dict[float, Verdict] = {}


def NAK(delay: float = 0.0) -> Verdict:  # noqa: N802  (reads as a constant, like ACK/TERM)
    """Redeliver the message after `delay` seconds (0: as soon as the server can)."""
    v = _NAKS.get(delay)
    if v is None:
        v = _NAKS[delay] = Verdict("nak", delay, jsfast.nak_payload(delay))
    return v


Result = Sequence[Verdict] | Verdict | None
BatchHandler = Callable[[list[JsMsg]], Awaitable[Result]]


@dataclass(frozen=True)
class Durable:
    """A durable pull consumer on one stream and filter subject. ack_wait and
    max_ack_pending apply when the durable is created (an existing one is used as it is)."""

    stream: str
    name: str
    subject: str
    ack_wait: float = 30.0
    max_ack_pending: int = 10000
    batch: int = 100

    def config(self) -> ConsumerConfig:
        return ConsumerConfig(durable_name=self.name, filter_subject=self.subject,
                              ack_wait=self.ack_wait, max_ack_pending=self.max_ack_pending)


class Consumer:
    def __init__(self, js: JetStreamContext, durable: Durable, handler: BatchHandler, *,
                 concurrency: int = 1, max_in_flight: int = 0, prefetch: int = 1,
                 error_delay: float = 1.0, progress_every: float | None = None,
                 drain_timeout: float | None = None, fetch_timeout: float = FETCH_TIMEOUT) -> None:
        self.js = js
        self.nc: NATS = nats_internals.connection_of(js)  # jsfast talks to the connection
        self.durable = durable
        self.handler = handler
        self.concurrency = max(int(concurrency), 1)
        self.batch = max(int(durable.batch), 1)
        self.max_in_flight = max_in_flight or self.batch * self.concurrency
        self.prefetch = prefetch
        self.error_delay = error_delay
        # In-progress acks while a handler runs longer than this (0: never).
        self.progress_every = durable.ack_wait / 2 if progress_every is None else progress_every
        self.drain_timeout = drain_timeout
        self.fetch_timeout = fetch_timeout
        self.in_flight = 0  # messages handed to handlers and not yet settled by us
        self._running = 0  # batches handed out and not finished (a task leaves _tasks later)
        self.stats = {"fetches": 0, "batches": 0, "ack": 0, "nak": 0, "term": 0, "errors": 0}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wpi: set[asyncio.Task[None]] = set()
        self._room = asyncio.Event()
        self._counters = {k: bus.BUS_MESSAGES.labels(durable.name, k) for k in ("ack", "nak", "term")}

    # --- the loop -----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, then drain. Creating the durable may raise (no
        stream, no JetStream): the caller decides whether to retry or exit."""
        d = self.durable
        sub = jsfast.PullConsumer(self.nc, d.stream, d.name, config=d.config(), batch=self.batch,
                                  prefetch=self.prefetch)
        await sub.start()
        bus.watch_lag(self.js, d.stream, d.name)
        try:
            await self._loop(sub, stop)
        finally:
            with contextlib.suppress(Exception):
                await sub.close(nak_buffered=True)
            await self._drain()
            bus.unwatch_lag(d.stream, d.name)

    async def _loop(self, sub: jsfast.PullConsumer, stop: asyncio.Event) -> None:
        inline = self.concurrency == 1 and self.max_in_flight <= self.batch
        cap = self.max_in_flight
        low = max(1, min(self.batch, cap // 4))  # fetch again once this much room is free
        while not stop.is_set():
            size = self.batch
            if not inline:
                room = cap - self.in_flight
                if room < low or self._running >= self.concurrency:
                    self._room.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._room.wait(), self.fetch_timeout)
                    continue
                size = min(room, self.batch)
            msgs = await self.fetch(sub, size)
            if not msgs:
                continue
            # Counted before a task runs, so the next room check sees them.
            self.in_flight += len(msgs)
            self._running += 1
            if inline:
                await self._handle(msgs)
            else:
                task = asyncio.ensure_future(self._handle(msgs))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def fetch(self, sub: jsfast.PullConsumer, size: int) -> list[JsMsg]:
        """One batch, or [] (idle: silent; a failure: logged with its cause, then a pause)."""
        self.stats["fetches"] += 1
        try:
            if self.nc.is_closed:  # closed for good (a disconnect is only "reconnecting")
                raise ConnectionClosedError
            return await sub.fetch(size, timeout=self.fetch_timeout)
        except (NatsTimeout, TimeoutError):
            return []
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("fetch failed", extra={"consumer": self.durable.name,
                                               "error_type": type(exc).__name__,
                                               "error": str(exc) or repr(exc)})
            await asyncio.sleep(ERROR_PAUSE)
            return []

    async def _drain(self) -> None:
        if not self._tasks:
            return
        done, left = await asyncio.wait(set(self._tasks), timeout=self.drain_timeout)
        if left:
            log.error("stopping with %d batches unfinished; their messages are redelivered",
                      len(left), extra={"consumer": self.durable.name})
            for t in left:
                t.cancel()
            await asyncio.gather(*left, return_exceptions=True)

    # --- one batch ----------------------------------------------------------------------
    async def _handle(self, msgs: list[JsMsg]) -> None:
        """Run the handler on one batch (counted in in_flight) and settle every message by
        its verdict."""
        n = len(msgs)
        self.stats["batches"] += 1
        timer = self._progress_timer(msgs)
        try:
            try:
                result = await self.handler(msgs)
            except asyncio.CancelledError:
                await self._settle_all(msgs, NAK(0.0))
                raise
            except Exception as exc:
                self.stats["errors"] += 1
                log.exception("batch handler failed; redelivering the batch", extra={
                    "consumer": self.durable.name, "messages": n,
                    "error_type": type(exc).__name__, "error": str(exc)})
                await self._settle_all(msgs, NAK(self.error_delay))
                return
            await self._settle(msgs, result)
        finally:
            if timer is not None:
                timer.cancel()
            self.in_flight -= n
            self._running -= 1
            self._room.set()  # the loop re-checks its room (and its low-water mark)

    async def _settle(self, msgs: list[JsMsg], result: Result) -> None:
        if result is None or isinstance(result, Verdict):
            await self._settle_all(msgs, result or ACK)
            return
        if len(result) != len(msgs):
            log.error("batch handler returned %d verdicts for %d messages; redelivering the batch",
                      len(result), len(msgs), extra={"consumer": self.durable.name})
            await self._settle_all(msgs, NAK(self.error_delay))
            return
        groups: dict[Verdict, list[JsMsg]] = {}
        for m, v in zip(msgs, result, strict=True):
            if not m.settled:  # else settled by the handler itself
                groups.setdefault(v, []).append(m)
        for v, group in groups.items():
            await self._write(group, v)

    async def _settle_all(self, msgs: list[JsMsg], verdict: Verdict) -> None:
        await self._write([m for m in msgs if not m.settled], verdict)

    async def _write(self, msgs: list[JsMsg], verdict: Verdict) -> None:
        if not msgs:
            return
        self.stats[verdict.kind] += len(msgs)
        self._counters[verdict.kind].inc(len(msgs))
        try:
            await jsfast.settle_many(msgs, verdict.payload)
        except Exception as exc:  # connection gone: the server redelivers after ack_wait
            log.warning("settling messages failed", extra={
                "consumer": self.durable.name, "messages": len(msgs), "verdict": repr(verdict),
                "error_type": type(exc).__name__, "error": str(exc)})

    # --- in-progress acks -----------------------------------------------------------------
    def _progress_timer(self, msgs: list[JsMsg]) -> _Progress | None:
        """A timer (cancelled when the handler returns) that sends +WPI for the batch's
        unsettled messages every progress_every seconds; one timer per batch, no task."""
        if not self.progress_every:
            return None
        return _Progress(self.progress_every, msgs, self._wpi)


class _Progress:
    """The in-progress acks of one batch. No reference cycle survives cancel(): a timer
    closure that re-armed itself referenced itself, so every batch's messages (with their
    payloads) waited for the cyclic garbage collector, which the services run rarely
    (HERALD_GC_GEN0_THRESHOLD)."""

    __slots__ = ("every", "msgs", "wpi", "handle")

    def __init__(self, every: float, msgs: list[JsMsg], wpi: set[asyncio.Task[None]]) -> None:
        self.every, self.msgs, self.wpi = every, msgs, wpi
        self.handle = asyncio.get_running_loop().call_later(every, self._tick)

    def _tick(self) -> None:
        self.handle = asyncio.get_running_loop().call_later(self.every, self._tick)
        task = asyncio.ensure_future(_in_progress(self.msgs))
        self.wpi.add(task)
        task.add_done_callback(self.wpi.discard)

    def cancel(self) -> None:
        self.handle.cancel()  # drops the handle's reference to _tick (and so to this object)
        self.msgs = []


async def _in_progress(msgs: list[JsMsg]) -> None:
    live = [m for m in msgs if not m.settled]
    if not live:
        return
    payload = b"+WPI"
    cmds = [b"PUB %s %d\r\n%s\r\n" % (m.reply.encode(), len(payload), payload) for m in live]
    try:
        await jsfast.send_raw(live[0].nc, cmds)
    except Exception as exc:  # the messages come back after ack_wait: logged, not fatal
        log.warning("in-progress acks failed: %s", exc)


# --- per-message handlers -------------------------------------------------------------------
MessageHandler = Callable[[JsMsg], Awaitable[object]]


def per_message(handler: MessageHandler, name: str, *, concurrent: bool = False,
                error_delay: float = 1.0) -> BatchHandler:
    """A batch handler from a handler of one message: its return is ACK, bus.TemporaryError
    NAK(its delay), bus.PermanentError TERM, any other exception NAK(error_delay) (logged).
    concurrent=True runs the batch's messages together (they must be independent)."""

    async def one(msg: JsMsg) -> Verdict:
        try:
            await handler(msg)
        except bus.TemporaryError as exc:
            log.info("temporary failure, redelivering", extra={"consumer": name, "reason": str(exc)})
            return NAK(exc.delay)
        except bus.PermanentError as exc:
            log.error("dropping unprocessable message", extra={
                "consumer": name, "subject": msg.subject, "reason": str(exc)})
            return TERM
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("handler failed, redelivering", extra={"consumer": name, "subject": msg.subject})
            return NAK(error_delay)
        return ACK

    async def batch(msgs: list[JsMsg]) -> list[Verdict]:
        if concurrent:
            return list(await asyncio.gather(*(one(m) for m in msgs)))
        return [await one(m) for m in msgs]

    return batch

