"""Consumer lag on /metrics: what JetStream says about each durable a process consumes
(backlog, unacknowledged, redelivered), refreshed in the background, against a real
nats-server and a real gateway process."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig
from prometheus_client import REGISTRY

from cli import procs
from shared import bus
from shared.adapters import nats_internals

pytestmark = pytest.mark.timeout(90)

PENDING = "herald_jetstream_consumer_pending_messages"
ACK_PENDING = "herald_jetstream_consumer_ack_pending_messages"
REDELIVERED = "herald_jetstream_consumer_redelivered_messages"


@pytest.fixture(scope="module")
def private_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # Its own server: the email gateway's durable here must not meet other tests' jobs.
    proc = procs.start_nats(Path(tmp_path_factory.mktemp("lag-nats")))
    yield str(proc.info["url"])
    proc.stop()


@pytest.fixture
async def js(private_nats: str) -> AsyncIterator[JetStreamContext]:
    nc = await bus.connect(private_nats, name="test")
    ctx = nc.jetstream()
    await bus.ensure_streams(ctx)
    yield ctx
    await nc.close()


def scrape(port: int) -> dict[tuple[str, str, str], float]:
    """{(metric, stream, durable): value} of the lag gauges on a process's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    found = {}
    for m in re.finditer(r'^(herald_jetstream_consumer_\w+)\{([^}]*)\} (\S+)$', text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        found[(m.group(1), labels["stream"], labels["durable"])] = float(m.group(3))
    return found


def local(metric: str, stream: str, durable: str) -> float | None:
    return REGISTRY.get_sample_value(metric, {"stream": stream, "durable": durable})


async def eventually(check, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)


async def test_email_gateway_exports_its_backlog_while_it_cannot_consume(
        js: JetStreamContext, private_nats: str, tmp_path: Path) -> None:
    # The gateway was here before (its durable exists); it restarts while Redis is down, so
    # it claims nothing, and 25 jobs queue up.
    await js.add_consumer(bus.JOBS_STREAM, ConsumerConfig(
        durable_name="email", filter_subject=bus.SUBJECT_EMAIL_JOBS, ack_wait=60))
    redis_port = procs.free_port()
    gateway = procs.start_module("email-gateway", "gateways.email", tmp_path, {
        "HERALD_NATS_URL": private_nats,
        "HERALD_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "HERALD_SMTP_HOST": "127.0.0.1", "HERALD_SMTP_PORT": str(procs.free_port()),
        "HERALD_TRACKING_KEYS": "lag-test-key", "HERALD_BOUNCE_ADDR": "",
        "HERALD_LAG_INTERVAL": "0.2",
    })
    redis = None
    try:
        port = int(gateway.info["metrics_port"])
        for i in range(25):
            await js.publish(bus.SUBJECT_EMAIL_JOBS, b"not a job",
                             headers={"Nats-Msg-Id": f"lag-{i}:1"})

        def backlog_seen() -> None:
            got = scrape(port)
            assert got.get((PENDING, "JOBS", "email")) == 25, got
            assert got.get((ACK_PENDING, "JOBS", "email")) == 0, got
            assert got.get((REDELIVERED, "JOBS", "email")) == 0, got

        await eventually(backlog_seen)

        # Redis comes back: the gateway drains the queue and the gauge follows.
        redis = procs.start_redis(tmp_path / "redis", port=redis_port)

        def drained() -> None:
            got = scrape(port)
            assert got.get((PENDING, "JOBS", "email")) == 0, got
            assert got.get((ACK_PENDING, "JOBS", "email")) == 0, got

        await eventually(drained, timeout=20)
        assert gateway.alive()
    finally:
        gateway.stop()
        if redis is not None:
            redis.stop()


async def test_unacked_and_redelivered_messages(js: JetStreamContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_LAG_INTERVAL", "0.1")
    durable, subject = f"lag-{uuid.uuid4().hex[:8]}", f"events.lagtest.{uuid.uuid4().hex[:8]}"
    sub = await js.pull_subscribe(subject, durable=durable, stream=bus.EVENTS_STREAM,
                                  config=ConsumerConfig(durable_name=durable, filter_subject=subject,
                                                        ack_wait=60))
    bus.watch_lag(js, bus.EVENTS_STREAM, durable)
    for i in range(10):
        await js.publish(subject, b"e", headers={"Nats-Msg-Id": f"{durable}-{i}"})

    def values() -> tuple[float | None, ...]:
        return tuple(local(m, "EVENTS", durable) for m in (PENDING, ACK_PENDING, REDELIVERED))

    def expect(*want: float) -> None:
        assert values() == want

    await eventually(lambda: expect(10, 0, 0))
    first = await sub.fetch(3, timeout=2)
    await eventually(lambda: expect(7, 3, 0))
    for m in first:
        await m.nak()
    await nats_internals.connection_of(js).flush()
    await asyncio.sleep(0.2)  # naks are fire-and-forget: let the server queue them first
    again = await sub.fetch(3, timeout=2)
    assert all(m.metadata.num_delivered == 2 for m in again)
    await eventually(lambda: expect(7, 3, 3))
    for m in again:
        await m.ack()
    await eventually(lambda: expect(7, 0, 0))

    # Unwatched (its loop ended): the series goes instead of going stale.
    bus.unwatch_lag(bus.EVENTS_STREAM, durable)
    assert values() == (None, None, None)
    await sub.unsubscribe()


async def test_pull_loop_exports_its_durable_until_it_stops(
        js: JetStreamContext, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_LAG_INTERVAL", "0.1")
    durable, subject = f"lag-{uuid.uuid4().hex[:8]}", f"events.lagtest.{uuid.uuid4().hex[:8]}"
    gate, stop = asyncio.Event(), asyncio.Event()

    async def handler(_msg) -> None:  # type: ignore[no-untyped-def]
        await gate.wait()

    for i in range(8):
        await js.publish(subject, b"e", headers={"Nats-Msg-Id": f"{durable}-{i}"})
    loop = asyncio.create_task(bus.pull_loop(js, stream=bus.EVENTS_STREAM, durable=durable,
                                             subject=subject, handler=handler, stop=stop,
                                             batch=5, concurrent=True))
    def expect(pending: float, ack_pending: float) -> None:
        assert (local(PENDING, "EVENTS", durable), local(ACK_PENDING, "EVENTS", durable)) == (
            pending, ack_pending)

    await eventually(lambda: expect(3, 5))  # one batch in hand, the rest waiting
    gate.set()
    await eventually(lambda: expect(0, 0))
    stop.set()
    await asyncio.wait_for(loop, 5)
    assert local(PENDING, "EVENTS", durable) is None
