"""How the runtime pulls its jobs, three ways:

- batches (shared.consumer, the default): `batches_in_flight` fetched batches at once, a
  batch's slot free once every job of it is settled;
- jobs (RuntimeConfig.max_in_flight > 0): at most that many jobs from fetch to ack, each
  job's slot free as soon as it is settled, for streaming channels whose jobs of one batch
  end at different times (a job waiting on a slow carrier answer holds its own slot only);
  two pull requests are kept ahead (shared.jsfast.PullConsumer);
- nats (RuntimeConfig.consumer == "nats"): nats-py's pull_subscribe/fetch, for comparison.

A stop ends the fetching: buffered jobs are nak'd at once, the jobs in hand finish (the
channel's connections drain), for at most drain_timeout in the jobs mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import ConsumerConfig

from shared import jsfast
from shared.adapters import nats_internals
from shared.consumer import NAK, Consumer, Durable, Verdict

if TYPE_CHECKING:
    from gateways.core.runtime import Runtime

FETCH_TIMEOUT = 0.5  # seconds an idle fetch waits: how soon a stop is noticed
ERROR_PAUSE = 0.5  # seconds between a failed fetch and the next


async def consume(rt: Runtime, stop: asyncio.Event) -> None:
    if rt.cfg.max_in_flight > 0:
        await JobsInFlight(rt, rt.cfg.max_in_flight).run(stop)
    elif rt.cfg.consumer == "nats":
        await _nats(rt, stop)
    else:
        await _batches(rt, stop)


async def _batches(rt: Runtime, stop: asyncio.Event) -> None:
    d = rt.cfg
    # One batch prefetched beyond the ones in flight; the handler settles every job
    # itself, so the consumer's verdict only reaches a job left unsettled by a bug. No
    # in-progress acks: a job stuck with a carrier that does not answer is redelivered
    # after ack_wait and finds its marker (busy, then its outcome or ABANDONED).
    async def handle(msgs: list[jsfast.JsMsg]) -> Verdict:
        await rt.handle_batch(msgs)
        return NAK(1.0)

    consumer = Consumer(rt.js, Durable(d.stream, d.durable, d.subject, d.ack_wait,
                                       d.max_ack_pending, rt.batch_size()), handle,
                        concurrency=max(d.batches_in_flight, 1), prefetch=1, progress_every=0)
    await consumer.run(stop)


class JobsInFlight:
    """The jobs mode (see the module's docstring)."""

    def __init__(self, rt: Runtime, cap: int) -> None:
        self.rt = rt
        self.cap = cap
        self.in_flight = 0  # jobs fetched and not yet settled
        self._room = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        rt.recorder.settled = self.freed
        rt.settled = self.freed

    def freed(self, n: int) -> None:
        self.in_flight -= n
        if self.in_flight <= self.cap * 3 // 4 or self.in_flight <= 0:
            self._room.set()

    async def run(self, stop: asyncio.Event) -> None:
        rt, d, cap = self.rt, self.rt.cfg, self.cap
        batch = max(1, min(cap, rt.batch_size()))
        sub = jsfast.PullConsumer(
            nats_internals.connection_of(rt.js), d.stream, d.durable,
            config=ConsumerConfig(durable_name=d.durable, filter_subject=d.subject,
                                  ack_wait=d.ack_wait, max_ack_pending=d.max_ack_pending),
            batch=batch, prefetch=2)
        await sub.start()
        low = max(1, min(batch, cap // 4))  # fetch again once this much room is free
        try:
            while not stop.is_set():
                room = cap - self.in_flight
                if room < low:
                    self._room.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._room.wait(), FETCH_TIMEOUT)
                    continue
                msgs = await self._fetch(sub, min(room, batch))
                if msgs:
                    self.in_flight += len(msgs)
                    task = asyncio.ensure_future(rt.handle_batch(msgs))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        finally:
            await sub.close(nak_buffered=True)
            await self._drain()

    async def _fetch(self, sub: jsfast.PullConsumer, size: int) -> list[jsfast.JsMsg]:
        try:
            return await sub.fetch(size, timeout=FETCH_TIMEOUT)
        except (NatsTimeout, TimeoutError):
            return []
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # connection trouble: the client reconnects by itself
            self.rt.log.warning(f"{self.rt.channel.name} job fetch failed", extra={
                "reason": f"{type(exc).__name__}: {exc}", "consumer": self.rt.cfg.durable})
            await asyncio.sleep(ERROR_PAUSE)
            return []

    async def _drain(self) -> None:
        """The jobs in hand finish, for at most drain_timeout."""
        timeout = self.rt.cfg.drain_timeout
        limit = time.monotonic() + (timeout if timeout is not None else float("inf"))
        while self.in_flight > 0 and time.monotonic() < limit:
            self._room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._room.wait(), FETCH_TIMEOUT)
        if self.in_flight > 0:
            self.rt.log.error("stopping with %d jobs unfinished; JetStream redelivers them",
                              self.in_flight)


async def _nats(rt: Runtime, stop: asyncio.Event) -> None:
    """nats-py's pull_subscribe/fetch (HERALD_EMAIL_CONSUMER=nats, for comparison)."""
    d = rt.cfg
    cfg = ConsumerConfig(durable_name=d.durable, filter_subject=d.subject,
                         ack_wait=d.ack_wait, max_ack_pending=d.max_ack_pending)
    sub = await rt.js.pull_subscribe(d.subject, durable=d.durable, stream=d.stream, config=cfg)
    slots = asyncio.Semaphore(max(d.batches_in_flight, 1))
    tasks: set[asyncio.Task[None]] = set()
    size = rt.batch_size()

    def done(t: asyncio.Task[None]) -> None:
        tasks.discard(t)
        slots.release()

    while not stop.is_set():
        await slots.acquire()
        try:
            msgs = await sub.fetch(size, timeout=FETCH_TIMEOUT)
        except (NatsTimeout, TimeoutError):
            slots.release()
            continue
        except asyncio.CancelledError:
            slots.release()
            raise
        except Exception as exc:  # connection trouble: the client reconnects by itself
            slots.release()
            rt.log.warning(f"{rt.channel.name} job fetch failed", extra={
                "reason": f"{type(exc).__name__}: {exc}", "consumer": d.durable})
            await asyncio.sleep(ERROR_PAUSE)
            continue
        task = asyncio.create_task(rt.handle_batch(msgs))
        tasks.add(task)
        task.add_done_callback(done)
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
    with contextlib.suppress(Exception):
        await sub.unsubscribe()
