"""shared.jsfast against real nats-server: batching, idle timeouts, nak with delay,
term, ack_wait redelivery, a deleted consumer, and a nats-server restart."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nats.js.api import ConsumerConfig, RetentionPolicy, StreamConfig

from cli import procs
from shared import bus, jsfast


class _Env:
    def __init__(self, nc: Any, js: Any, stream: str, subject: str) -> None:
        self.nc, self.js, self.stream, self.subject = nc, js, stream, subject

    async def put(self, n: int, start: int = 0) -> None:
        acks = [await self.js.publish_async(self.subject, str(i).encode(),
                                            headers={"Nats-Msg-Id": f"{self.stream}-{i}"})
                for i in range(start, start + n)]
        await asyncio.gather(*acks)

    def consumer(self, durable: str = "d", ack_wait: float = 30.0, **kw: Any) -> jsfast.PullConsumer:
        cfg = ConsumerConfig(filter_subject=self.subject, ack_wait=ack_wait, max_ack_pending=10000)
        return jsfast.PullConsumer(self.nc, self.stream, durable, config=cfg, **kw)


async def _env(nc: Any) -> _Env:
    js = nc.jetstream()
    tag = uuid.uuid4().hex[:8]
    stream, subject = f"JSFT{tag}", f"jsft.{tag}.jobs"
    await js.add_stream(StreamConfig(name=stream, subjects=[f"jsft.{tag}.>"],
                                     retention=RetentionPolicy.WORK_QUEUE))
    return _Env(nc, js, stream, subject)


@pytest.fixture
async def env(nats_url: str) -> AsyncIterator[_Env]:
    nc = await bus.connect(nats_url)
    ev = await _env(nc)
    yield ev
    await ev.js.delete_stream(ev.stream)
    await nc.close()


async def _drain(c: jsfast.PullConsumer, want: int, per_fetch: int, rounds: int = 30) -> list[jsfast.JsMsg]:
    got: list[jsfast.JsMsg] = []
    for _ in range(rounds):
        if len(got) >= want:
            break
        msgs = await c.fetch(per_fetch, timeout=1.0)
        assert len(msgs) <= per_fetch
        got.extend(msgs)
    return got


def test_metadata_both_ack_subject_forms() -> None:
    m = jsfast.Metadata("$JS.ACK.JOBS.email.3.41.17.1700000000000000000.5")
    assert (m.stream, m.consumer, m.num_delivered, m.stream_seq, m.consumer_seq, m.num_pending) == (
        "JOBS", "email", 3, 41, 17, 5)
    m = jsfast.Metadata("$JS.ACK.hub.ACCHASH.JOBS.email.2.9.8.1700000000000000000.0.tok")
    assert (m.stream, m.consumer, m.num_delivered, m.stream_seq, m.num_pending) == (
        "JOBS", "email", 2, 9, 0)
    with pytest.raises(ValueError):
        jsfast.Metadata("_INBOX.x.y")


async def test_batches_every_message_once_and_acks(env: _Env) -> None:
    await env.put(500)
    c = env.consumer(batch=64, prefetch=2)
    await c.start()
    try:
        got = await _drain(c, 500, 100)
        assert sorted(int(m.data) for m in got) == list(range(500))
        assert all(m.num_delivered == 1 for m in got)
        assert got[0].headers and got[0].headers.get("Nats-Msg-Id", "").startswith(env.stream)
        assert c.stats["requests"] < 100  # batched, not one request per message
        assert c.stats["lost"] == 0  # requests were settled by count, not by deadline
        for m in got:
            await m.ack()
        await env.nc.flush()
        for _ in range(100):  # the server applies acks asynchronously
            info = await env.js.consumer_info(env.stream, "d")
            if info.num_ack_pending == 0:
                break
            await asyncio.sleep(0.05)
        assert info.num_ack_pending == 0 and info.num_pending == 0
        assert await c.fetch(10, timeout=0.2) == []
    finally:
        await c.close()


async def test_empty_stream_times_out_then_picks_up_new_work(env: _Env) -> None:
    c = env.consumer(expires=0.3)
    await c.start()
    try:
        for _ in range(3):  # several request expiries (408) in a row
            assert await c.fetch(10, timeout=0.25) == []
        await asyncio.sleep(0.5)
        await env.put(3)
        got = await _drain(c, 3, 10)
        assert sorted(int(m.data) for m in got) == [0, 1, 2]
        assert c.stats["statuses"] >= 1  # saw the 408s and carried on
        for m in got:
            await m.ack()
    finally:
        await c.close()


async def test_nak_with_delay_redelivers_later(env: _Env) -> None:
    await env.put(1)
    c = env.consumer()
    await c.start()
    try:
        (m,) = await _drain(c, 1, 10)
        await m.nak(delay=1.5)
        await m.nak(delay=0)  # a second settlement is ignored, not sent
        assert await c.fetch(10, timeout=0.3) == []  # still held back by the delay
        (again,) = await _drain(c, 1, 10)
        assert again.data == m.data and again.num_delivered == 2
        await again.ack()
    finally:
        await c.close()


async def test_term_is_never_redelivered_and_unacked_is(env: _Env) -> None:
    await env.put(2)
    c = env.consumer(ack_wait=1.0)
    await c.start()
    try:
        got = sorted(await _drain(c, 2, 10), key=lambda m: int(m.data))
        await got[0].term()  # message 0 terminated, message 1 left unacked
        again = await _drain(c, 1, 10)
        assert [(int(m.data), m.num_delivered) for m in again] == [(1, 2)]
        await again[0].ack()
        assert await c.fetch(10, timeout=1.5) == []  # the terminated one stays gone
    finally:
        await c.close()


async def test_consumer_deleted_under_the_reader_is_recreated(env: _Env) -> None:
    c = env.consumer(expires=0.5)
    await c.start()
    try:
        assert await c.fetch(10, timeout=0.2) == []
        await env.js.delete_consumer(env.stream, "d")
        await env.put(2)
        got = await _drain(c, 2, 10)
        assert sorted(int(m.data) for m in got) == [0, 1]
        for m in got:
            await m.ack()
    finally:
        await c.close()


async def test_survives_nats_server_restart(tmp_path: Path) -> None:
    server = procs.start_nats(tmp_path / "nats")
    port = int(server.info["port"])
    nc = await bus.connect(str(server.info["url"]))
    try:
        ev = await _env(nc)
        await ev.put(2)
        c = ev.consumer(expires=1.0)
        await c.start()
        got = await _drain(c, 2, 10)
        for m in got:
            await m.ack()
        await nc.flush()
        assert await c.fetch(10, timeout=0.2) == []  # a pull request is waiting server-side
        server.stop()
        server = procs.start_nats(tmp_path / "nats", port=port)  # same store: stream survives
        for _ in range(200):  # the client notices the restart only once the loop runs
            if nc.stats["reconnects"] and nc.is_connected:
                break
            await asyncio.sleep(0.05)
        assert nc.stats["reconnects"] and nc.is_connected
        await ev.put(3, start=2)
        after = await _drain(c, 3, 10)
        assert sorted(int(m.data) for m in after) == [2, 3, 4]
        for m in after:
            await m.ack()
        await c.close()
    finally:
        await nc.close()
        server.stop()


async def test_settle_many_acks_and_naks_in_one_write(env: _Env) -> None:
    await env.put(6)
    c = env.consumer(ack_wait=1.0)
    await c.start()
    try:
        got = sorted(await _drain(c, 6, 10), key=lambda m: int(m.data))
        await jsfast.settle_many(got[:4])                                   # acked
        await jsfast.settle_many(got[4:], jsfast.nak_payload(0.2))          # back soon
        await jsfast.settle_many(got[:4], jsfast.nak_payload(None))         # already settled: ignored
        again = sorted(await _drain(c, 2, 10), key=lambda m: int(m.data))
        assert [(int(m.data), m.num_delivered) for m in again] == [(4, 2), (5, 2)]
        await jsfast.settle_many(again)
        assert await c.fetch(10, timeout=1.5) == []  # nothing left, nothing redelivered
    finally:
        await c.close()


async def test_publisher_waits_for_every_ack_and_dedups_by_id(env: _Env) -> None:
    pub = await jsfast.Publisher(env.nc, timeout=5.0).start()
    try:
        items = [(env.subject, f"p{i}".encode(), f"pub-{i}") for i in range(300)]
        await pub.publish_many(items)
        assert (await env.js.stream_info(env.stream)).state.messages == 300
        await pub.publish_many(items[:50])  # the same ids again: stored once
        assert (await env.js.stream_info(env.stream)).state.messages == 300
        with pytest.raises(jsfast.PublishError, match="1 of 2 not stored"):
            await pub.publish_many([(env.subject, b"ok", "pub-new"),
                                    ("no.stream.here", b"lost", "pub-x")])
        assert (await env.js.stream_info(env.stream)).state.messages == 301
        with pytest.raises(ValueError):
            await pub.publish_many([(env.subject, b"x", "bad\r\nPUB evil 1")])
    finally:
        await pub.close()
