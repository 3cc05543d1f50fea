"""JetStream consumer lag as Prometheus gauges, per durable a process consumes.

Every consumer loop registers its durable (shared.bus.watch_lag); one background task per
process asks the server for each registered durable's consumer info once per interval and
sets three gauges. Nothing of this runs on the consume path, and a failed lookup is logged
(rate-limited) and never ends the process: its series are removed until the next lookup
succeeds, so a dashboard shows a gap rather than a stale number.

Every pod sharing a durable exports the same numbers (they are the server's, not the pod's):
aggregate with max by (stream, durable).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client import Gauge

from shared.adapters import nats_internals

log = logging.getLogger("herald.bus.lag")

PENDING = Gauge(
    "herald_jetstream_consumer_pending_messages",
    "Messages in the stream matching the durable consumer's filter and not yet delivered to "
    "it (JetStream num_pending): the backlog. Every pod of the durable reports the same value.",
    ["stream", "durable"],
)
ACK_PENDING = Gauge(
    "herald_jetstream_consumer_ack_pending_messages",
    "Messages delivered to the durable consumer and not yet acknowledged (num_ack_pending): "
    "work in hand, or lost with a crashed pod until ack_wait passes.",
    ["stream", "durable"],
)
REDELIVERED = Gauge(
    "herald_jetstream_consumer_redelivered_messages",
    "Messages delivered to the durable consumer more than once and not yet acknowledged "
    "(num_redelivered): naks, handler failures, ack_wait expiries.",
    ["stream", "durable"],
)
GAUGES = (PENDING, ACK_PENDING, REDELIVERED)
ERROR_LOG_EVERY = 60.0  # seconds between two error lines about one durable


@dataclass
class _Watch:
    js: JetStreamContext
    refs: int


class LagExporter:
    """The durables of one event loop and the task that refreshes their gauges."""

    def __init__(self, interval: float) -> None:
        self.interval = max(interval, 0.05)
        self._watched: dict[tuple[str, str], _Watch] = {}
        self._task: asyncio.Task[None] | None = None
        self._failing: dict[tuple[str, str], tuple[float, int]] = {}  # last log time, suppressed

    def watch(self, js: JetStreamContext, stream: str, durable: str) -> None:
        key = (stream, durable)
        w = self._watched.get(key)
        if w is None:
            self._watched[key] = _Watch(js, 1)
        else:  # several loops of one durable in one process: one lookup serves them all
            w.js, w.refs = js, w.refs + 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="jetstream-lag")

    def unwatch(self, stream: str, durable: str) -> None:
        key = (stream, durable)
        w = self._watched.get(key)
        if w is not None:
            w.refs -= 1
            if w.refs <= 0:
                self._drop(key)

    def _drop(self, key: tuple[str, str]) -> None:
        self._watched.pop(key, None)
        self._failing.pop(key, None)
        _forget(key)

    async def _run(self) -> None:
        while self._watched:
            await self.refresh()
            await asyncio.sleep(self.interval)

    async def refresh(self) -> None:
        """One consumer-info request per watched durable."""
        for key, w in list(self._watched.items()):
            nc = nats_internals.connection_of(w.js)  # the context's connection: gone means done
            if nc.is_closed or nc.is_draining:
                self._drop(key)  # the process is stopping
                continue
            stream, durable = key
            try:
                info = await w.js.consumer_info(stream, durable, timeout=min(5.0, 2 * self.interval + 1))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if key in self._watched:
                    _forget(key)
                    self._failed(key, exc)
                continue
            if key not in self._watched:  # unwatched while we asked
                continue
            PENDING.labels(stream, durable).set(info.num_pending or 0)
            ACK_PENDING.labels(stream, durable).set(info.num_ack_pending or 0)
            REDELIVERED.labels(stream, durable).set(info.num_redelivered or 0)
            if self._failing.pop(key, None) is not None:
                log.info("consumer lag available again", extra={"stream": stream, "durable": durable})

    def _failed(self, key: tuple[str, str], exc: Exception) -> None:
        now = time.monotonic()
        last, suppressed = self._failing.get(key, (-ERROR_LOG_EVERY, 0))
        if now - last < ERROR_LOG_EVERY:
            self._failing[key] = (last, suppressed + 1)
            return
        self._failing[key] = (now, 0)
        # Not found: not created yet (a loop registers before its first pull) or deleted by
        # an operator; the consumer loop (re)creates it, so this is news, not trouble.
        level = logging.INFO if isinstance(exc, NotFoundError) else logging.WARNING
        log.log(level, "consumer lag unavailable", extra={
            "stream": key[0], "durable": key[1], "suppressed": suppressed,
            "error": f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__})


def _forget(key: tuple[str, str]) -> None:
    for gauge in GAUGES:
        try:
            gauge.remove(*key)
        except KeyError:
            pass


_exporters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LagExporter] = (
    weakref.WeakKeyDictionary())


def exporter(interval: float) -> LagExporter:
    """This event loop's exporter (a process has one loop; tests may run several)."""
    loop = asyncio.get_running_loop()
    found = _exporters.get(loop)
    if found is None:
        found = _exporters[loop] = LagExporter(interval)
    return found
