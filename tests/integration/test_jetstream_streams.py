"""JOBS and EVENTS streams on a private nats-server: created with the configured limits, left
alone by a restart with the same settings, updated when a Herald-owned limit changes, never
losing what an operator set on fields Herald does not manage, and surviving a change the
server refuses."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy
from nats.js.errors import APIError, NotFoundError

from cli import procs
from shared import bus


@pytest.fixture(scope="module")
def private_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # Not the session server: these tests change the streams' limits.
    proc = procs.start_nats(Path(tmp_path_factory.mktemp("streams-nats")))
    yield str(proc.info["url"])
    proc.stop()


class Server:
    """A connection to the private server that also records every stream create/update
    request any client sends (JetStream's API is plain NATS request/reply)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.requests: list[str] = []

    async def start(self) -> None:
        self.nc = await bus.connect(self.url, name="test")
        self.js = self.nc.jetstream()
        for name in (bus.JOBS_STREAM, bus.EVENTS_STREAM):
            try:
                await self.js.delete_stream(name)
            except NotFoundError:
                pass

        async def seen(msg) -> None:  # type: ignore[no-untyped-def]
            self.requests.append(msg.subject)

        await self.nc.subscribe("$JS.API.STREAM.CREATE.>", cb=seen)
        await self.nc.subscribe("$JS.API.STREAM.UPDATE.>", cb=seen)
        await self.nc.flush()

    async def process_start(self) -> None:
        """What every Herald process does at start-up, on a connection of its own."""
        nc = await bus.connect(self.url, name="herald")
        try:
            await bus.ensure_streams(nc.jetstream())
        finally:
            await nc.close()
        await self.nc.flush()

    def take(self) -> list[str]:
        found, self.requests = self.requests, []
        return found


@pytest.fixture
async def server(private_nats: str) -> AsyncIterator[Server]:
    s = Server(private_nats)
    await s.start()
    yield s
    await s.nc.close()


async def config(js: JetStreamContext, name: str):  # type: ignore[no-untyped-def]
    return (await js.stream_info(name)).config


async def test_streams_created_with_configured_limits_and_full_jobs_refuses_publishes(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_JOBS_MAX_BYTES", "64KiB")
    monkeypatch.setenv("HERALD_EVENTS_MAX_BYTES", "2MB")
    monkeypatch.setenv("HERALD_EVENTS_MAX_AGE", "36h")
    await server.process_start()
    assert sorted(server.take()) == ["$JS.API.STREAM.CREATE.EVENTS", "$JS.API.STREAM.CREATE.JOBS"]

    jobs = await config(server.js, bus.JOBS_STREAM)
    events = await config(server.js, bus.EVENTS_STREAM)
    assert (jobs.max_bytes, jobs.discard, jobs.num_replicas) == (64 * 1024, DiscardPolicy.NEW, 1)
    assert (events.max_bytes, events.discard, events.max_age) == (
        2_000_000, DiscardPolicy.OLD, 36 * 3600.0)
    assert jobs.duplicate_window == events.duplicate_window == 120.0

    # Full JOBS: the publisher is told, and the jobs already queued are all still there.
    accepted = 0
    with pytest.raises(APIError) as refused:
        for i in range(200):
            await server.js.publish(bus.SUBJECT_SMS_JOBS, b"x" * 1024, headers={"Nats-Msg-Id": f"m{i}:1"})
            accepted += 1
    assert "maximum bytes" in str(refused.value.description).lower()
    assert 0 < accepted < 200
    assert (await server.js.stream_info(bus.JOBS_STREAM)).state.messages == accepted


async def test_restart_leaves_streams_alone_and_changed_limits_keep_operator_fields(
        server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_JOBS_MAX_BYTES", "1GiB")
    await server.process_start()
    server.take()
    # An operator adds a description and a message cap Herald knows nothing about.
    live = await config(server.js, bus.JOBS_STREAM)
    await server.js.update_stream(replace(live, description="jobs: capped by ops", max_msgs=50_000))
    server.take()

    await server.process_start()  # a restart with the same settings
    assert server.take() == []

    monkeypatch.setenv("HERALD_JOBS_MAX_BYTES", "2GiB")
    monkeypatch.setenv("HERALD_EVENTS_MAX_AGE", "3d")
    await server.process_start()
    assert sorted(server.take()) == ["$JS.API.STREAM.UPDATE.EVENTS", "$JS.API.STREAM.UPDATE.JOBS"]
    jobs = await config(server.js, bus.JOBS_STREAM)
    assert jobs.max_bytes == 2 << 30
    assert (jobs.description, jobs.max_msgs) == ("jobs: capped by ops", 50_000)
    assert (await config(server.js, bus.EVENTS_STREAM)).max_age == 3 * 86400.0

    await server.process_start()  # applied once, then stable
    assert server.take() == []


async def test_refused_change_is_logged_and_the_process_carries_on(
        server: Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    await server.process_start()
    # More than this server's disk: nats-server refuses to reserve it.
    monkeypatch.setenv("HERALD_JOBS_MAX_BYTES", "1000TiB")
    with caplog.at_level(logging.ERROR, logger="herald.bus"):
        await server.process_start()
    refused = [r for r in caplog.records if "refused" in r.getMessage()]
    assert [r.stream for r in refused] == ["JOBS"]  # type: ignore[attr-defined]
    assert f"max_bytes: -1 -> {1000 << 40}" in refused[0].changes  # type: ignore[attr-defined]
    assert "insufficient storage" in refused[0].error  # type: ignore[attr-defined]
    assert (await config(server.js, bus.JOBS_STREAM)).max_bytes == -1
    ack = await server.js.publish(bus.SUBJECT_EMAIL_JOBS, b"job", headers={"Nats-Msg-Id": "e1:1"})
    assert ack.stream == bus.JOBS_STREAM


def test_sizes_and_durations_in_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for raw, want in [("-1", -1), ("1048576", 1 << 20), ("10GiB", 10 << 30), ("10G", 10 << 30),
                      ("500MB", 500_000_000), ("1.5KiB", 1536)]:
        monkeypatch.setenv("HERALD_JOBS_MAX_BYTES", raw)
        assert bus.parse_size(bus.JOBS_MAX_BYTES) == want, raw
    for raw in ["0", "ten", "-5", "10XB"]:
        monkeypatch.setenv("HERALD_JOBS_MAX_BYTES", raw)
        with pytest.raises(ValueError, match="HERALD_JOBS_MAX_BYTES"):
            bus.parse_size(bus.JOBS_MAX_BYTES)
    for raw, secs in [("7d", 7 * 86400.0), ("36h", 36 * 3600.0), ("90m", 5400.0), ("0", 0.0)]:
        monkeypatch.setenv("HERALD_EVENTS_MAX_AGE", raw)
        assert bus.parse_duration(bus.EVENTS_MAX_AGE) == secs
