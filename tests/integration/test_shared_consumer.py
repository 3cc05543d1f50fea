"""shared.consumer against a private nats-server: verdicts as the server sees them (ack
removes, nak(delay) redelivers after the delay, term never redelivers), batch sizes, a failing
handler's batch redelivered, in-progress acks holding a slow batch past ack_wait, stop drains
(buffered messages back at once, the batch in hand finishes), idle fetches silent and fetch
failures logged with their cause."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.js.api import RetentionPolicy, StreamConfig

from shared import bus
from shared.consumer import ACK, NAK, TERM, Consumer, Durable, Verdict
from shared.jsfast import JsMsg


class _Env:
    def __init__(self, nc: Any, js: Any, stream: str, subject: str) -> None:
        self.nc, self.js, self.stream, self.subject = nc, js, stream, subject

    async def put(self, n: int, start: int = 0) -> None:
        acks = [await self.js.publish_async(self.subject, str(i).encode(),
                                            headers={"Nats-Msg-Id": f"{self.stream}-{i}"})
                for i in range(start, start + n)]
        await asyncio.gather(*acks)

    def durable(self, name: str = "d", **kw: Any) -> Durable:
        return Durable(self.stream, name, self.subject, **kw)

    async def info(self, name: str = "d") -> tuple[int, int, int]:
        i = await self.js.consumer_info(self.stream, name)
        return i.num_pending, i.num_ack_pending, i.num_redelivered

    async def left(self) -> int:
        return (await self.js.stream_info(self.stream)).state.messages


@pytest.fixture
async def env(nats_url: str) -> AsyncIterator[_Env]:
    nc = await bus.connect(nats_url)
    js = nc.jetstream()
    tag = uuid.uuid4().hex[:8]
    stream, subject = f"SCT{tag}", f"sct.{tag}.jobs"
    await js.add_stream(StreamConfig(name=stream, subjects=[f"sct.{tag}.>"],
                                     retention=RetentionPolicy.WORK_QUEUE))
    yield _Env(nc, js, stream, subject)
    await js.delete_stream(stream)
    await nc.close()


async def until(cond: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


class Running:
    """A consumer task with its stop event."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer, self.stop = consumer, asyncio.Event()
        self.task = asyncio.create_task(consumer.run(self.stop))

    async def close(self, timeout: float = 10.0) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, timeout)


async def test_verdicts_ack_nak_with_delay_and_term(env: _Env) -> None:
    """Per message: 0 acked (gone), 1 nak'ed with 0.8 s delay (back after the delay, not
    before), 2 terminated (never back)."""
    await env.put(3)
    seen: list[tuple[str, int, float]] = []
    verdict = {"0": ACK, "1": NAK(0.8), "2": TERM}

    async def handle(msgs: list[JsMsg]) -> list[Verdict]:
        for m in msgs:
            seen.append((m.data.decode(), m.num_delivered, time.monotonic()))
        return [verdict[m.data.decode()] if m.num_delivered == 1 else ACK for m in msgs]

    run = Running(Consumer(env.js, env.durable(), handle))
    try:
        await until(lambda: _count(seen, 4))
        await asyncio.sleep(1.0)  # nothing else comes: the term'ed one stays gone
    finally:
        await run.close()
    firsts = {d: t for d, n, t in seen if n == 1}
    assert sorted(firsts) == ["0", "1", "2"]
    again = [(d, n, t) for d, n, t in seen if n > 1]
    assert [(d, n) for d, n, _ in again] == [("1", 2)]
    assert again[0][2] - firsts["1"] >= 0.75  # the delay was honoured
    assert await env.info() == (0, 0, 0)
    assert await env.left() == 0
    assert run.consumer.stats["ack"] == 2 and run.consumer.stats["nak"] == 1
    assert run.consumer.stats["term"] == 1


async def _count(seen: list[Any], n: int) -> bool:
    return len(seen) >= n


async def test_batches_are_at_most_the_durable_batch(env: _Env) -> None:
    await env.put(250)
    sizes: list[int] = []

    async def handle(msgs: list[JsMsg]) -> None:
        sizes.append(len(msgs))

    run = Running(Consumer(env.js, env.durable(batch=64), handle))
    try:
        await until(lambda: _sum(sizes, 250))
    finally:
        await run.close()
    assert sum(sizes) == 250 and max(sizes) == 64
    assert sizes.count(64) >= 3  # a backlog is handed out in full batches
    await until(lambda: _left_is(env, 0))


async def _sum(sizes: list[int], n: int) -> bool:
    return sum(sizes) >= n


async def _left_is(env: _Env, n: int) -> bool:
    return await env.left() == n


async def test_a_handler_exception_naks_the_batch(env: _Env,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """The first delivery of every message fails in the handler: the whole batch comes back
    (after error_delay) and is then acked; the failure is logged with its cause."""
    await env.put(5)
    deliveries: list[tuple[str, int]] = []

    async def handle(msgs: list[JsMsg]) -> None:
        deliveries.extend((m.data.decode(), m.num_delivered) for m in msgs)
        if any(m.num_delivered == 1 for m in msgs):
            raise RuntimeError("database unavailable")

    caplog.set_level(logging.WARNING, logger="herald.consumer")
    run = Running(Consumer(env.js, env.durable(), handle, error_delay=0.2))
    try:
        await until(lambda: _count([d for d in deliveries if d[1] == 2], 5))
        await until(lambda: _left_is(env, 0))
    finally:
        await run.close()
    assert sorted(d for d, n in deliveries if n == 2) == ["0", "1", "2", "3", "4"]
    [rec, *_] = [r for r in caplog.records if r.name == "herald.consumer"]
    assert rec.error == "database unavailable" and rec.error_type == "RuntimeError"  # type: ignore[attr-defined]
    assert await env.info() == (0, 0, 0)


async def test_a_slow_handler_keeps_its_batch_with_in_progress_acks(env: _Env) -> None:
    """ack_wait 1 s, a handler that takes 2.5 s: without +WPI the server would redeliver."""
    await env.put(3)
    deliveries: list[int] = []

    async def handle(msgs: list[JsMsg]) -> None:
        deliveries.extend(m.num_delivered for m in msgs)
        await asyncio.sleep(2.5)

    run = Running(Consumer(env.js, env.durable(ack_wait=1.0), handle))
    try:
        await until(lambda: _left_is(env, 0), 15)
    finally:
        await run.close()
    assert deliveries == [1, 1, 1]


async def test_stop_drains(env: _Env) -> None:
    """Two batches in hand (concurrency 2) when stop is set: both finish and are acked;
    buffered messages never handed out go back at once (no ack_wait wait), so a second
    consumer picks them up straight away."""
    await env.put(40)
    gate = asyncio.Event()
    handled: list[str] = []

    async def slow(msgs: list[JsMsg]) -> None:
        await gate.wait()
        handled.extend(m.data.decode() for m in msgs)

    first = Consumer(env.js, env.durable(batch=10, ack_wait=30.0), slow, concurrency=2,
                     prefetch=1)
    run = Running(first)
    await until(lambda: _true(first.in_flight == 20))
    run.stop.set()
    await asyncio.sleep(0.6)  # the loop notices the stop, buffered messages are nak'ed
    assert not run.task.done()  # still draining the two batches in hand
    gate.set()
    await asyncio.wait_for(run.task, 5)
    assert len(handled) == 20
    rest: list[str] = []

    async def quick(msgs: list[JsMsg]) -> None:
        rest.extend(m.data.decode() for m in msgs)

    started = time.monotonic()
    second = Running(Consumer(env.js, env.durable(batch=10), quick))
    try:
        await until(lambda: _left_is(env, 0))
    finally:
        await second.close()
    assert time.monotonic() - started < 5  # not after the 30 s ack_wait
    assert sorted(handled + rest, key=int) == [str(i) for i in range(40)]


async def _true(v: bool) -> bool:
    return v


async def test_max_in_flight_caps_concurrent_batches(env: _Env) -> None:
    await env.put(60)
    gate = asyncio.Event()
    peak = [0]
    c: Consumer

    async def handle(msgs: list[JsMsg]) -> None:
        peak[0] = max(peak[0], c.in_flight)
        await gate.wait()

    c = Consumer(env.js, env.durable(batch=10), handle, concurrency=8, max_in_flight=25)
    run = Running(c)
    try:
        await asyncio.sleep(1.0)
        assert 0 < c.in_flight <= 25
        gate.set()
        await until(lambda: _left_is(env, 0))
    finally:
        await run.close()
    assert peak[0] <= 25


async def test_idle_fetches_are_silent_and_failures_are_logged(
        env: _Env, nats_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="herald")

    async def handle(msgs: list[JsMsg]) -> None:
        raise AssertionError("nothing to handle")

    idle = Consumer(env.js, env.durable(), handle, fetch_timeout=0.1)
    run = Running(idle)
    await until(lambda: _true(idle.stats["fetches"] >= 5))
    await run.close()
    assert [r.getMessage() for r in caplog.records if r.name.startswith("herald")] == []
    await env.js.delete_consumer(env.stream, "d")  # a work queue allows one consumer per subject

    nc = await bus.connect(nats_url)
    js = nc.jetstream()
    broken = Consumer(js, env.durable("d2"), handle, fetch_timeout=0.1)
    run = Running(broken)
    await until(lambda: _true(broken.stats["fetches"] >= 1))
    await nc.close()  # the connection is gone under the consumer: logged, retried
    await until(lambda: _true(broken.stats["fetches"] >= 4))
    await run.close()
    recs = [r for r in caplog.records if r.name == "herald.consumer"]
    assert len(recs) >= 2 and {r.getMessage() for r in recs} == {"fetch failed"}
    assert all(r.levelno == logging.WARNING and r.consumer == "d2"  # type: ignore[attr-defined]
               and r.error_type and r.error for r in recs)  # type: ignore[attr-defined]


async def test_a_handled_batch_is_freed_without_the_cyclic_collector(env: _Env) -> None:
    """Once a batch is handled nothing keeps its messages alive: no reference cycle (the
    in-progress timer's) holds them for the cyclic garbage collector, which the services
    run rarely (HERALD_GC_GEN0_THRESHOLD), so each batch's payloads piled up in memory."""
    import gc

    await env.put(30)
    handled: list[int] = []

    async def handle(msgs: list[JsMsg]) -> None:
        await asyncio.sleep(0.08)  # the in-progress timer fires (and re-arms) at least once
        handled.append(len(msgs))

    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        run = Running(Consumer(env.js, env.durable(batch=10), handle, progress_every=0.03))

        async def done() -> bool:
            return sum(handled) == 30
        await until(done)
        await run.close()
        gc.collect()
        held = [o for o in gc.garbage if isinstance(o, JsMsg)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert held == [], f"{len(held)} messages of handled batches were held by a reference cycle"
