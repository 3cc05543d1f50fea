"""What the channel runtime (gateways.core) offers a channel beyond the basics, with the toy
channel of test_core_runtime: text markers of an earlier gateway judged like the runtime's
own, a claim reopened for a job the carrier refused for now, the channel's own writes riding
the group commit (and the recording retried in place), the in-flight cap counted in jobs,
and outcome events with parts, channel data and event ids of the channel's own."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from gateways.core import markers as m
from gateways.core import outcome
from gateways.core.channel import Job, Report
from gateways.core.gate import WriteGate
from gateways.core.runtime import Runtime
from shared import ids
from tests.integration import test_core_runtime as base
from tests.integration.test_core_runtime import K, Rig, Toy, sample

pytestmark = pytest.mark.timeout(60)
own_redis, rig = base.own_redis, base.rig  # the fixtures of test_core_runtime

OWN_IDS = ids.uuid5_text(uuid.UUID("0b6d9a3e-2a55-4f0e-8c1e-6a7c3f2d9b11"))


def legacy_reader(text: str) -> dict[str, Any] | None:
    """The toy's earlier text outcomes: ok:<provider id>, failed:<code>."""
    state, _, value = text.partition(":")
    if state == "ok":
        return {"s": m.SUBMITTED, **outcome.as_marker(outcome.submitted(value, route="old"))}
    if state == "failed":
        return {"s": m.FAILED, **outcome.as_marker(outcome.failed(
            "refused before", c.FAILURE_CATEGORY_CARRIER_REJECTED, value))}
    return None


class Hooked(Toy):
    """The toy with the optional members: parts and channel data on its outcomes, its own
    event ids, its own writes after the events, and a "throttle" address refused once
    after the gate let it through."""

    def __init__(self, streams: bool = False) -> None:
        super().__init__(streams)
        self.throttled: set[str] = set()
        self.recorded_jobs: list[tuple[str, bool]] = []
        self.writes: list[tuple[str, str]] = []  # (message id, marker state at that moment)
        self.redis: Any = None
        self.keys: m.MarkerKeys | None = None

    def event_id(self, msg_id: str) -> str:
        return OWN_IDS(msg_id)

    async def send(self, jobs: list[Job], gate: WriteGate, report: Report) -> None:
        refused = await gate.commit_many([j.ticket for j in jobs])
        for job, why in zip(jobs, refused, strict=True):
            if why is not None:
                report.unwritten(job)
                continue
            self.wire.append(job.job.message_id)
            if job.prepared.startswith("throttle") and job.job.message_id not in self.throttled:
                self.throttled.add(job.job.message_id)
                report.handed_back(job, 0.1)  # written, and refused for now by the carrier
                continue
            ok = outcome.Outcome(K.MESSAGE_EVENT_KIND_SUBMITTED, "0", "accepted",
                                 provider_id=f"toy-{job.job.message_id}", route="toy", parts=2,
                                 extra="part-1,part-2")
            report.accepted(job, ok)
            report.outcome(job, ok)

    async def record(self, jobs: Sequence[Job]) -> None:
        assert self.redis is not None and self.keys is not None
        for it in jobs:
            raw = await self.redis.get(self.keys.key(it.job.message_id, it.job.attempt))
            self.writes.append((it.job.message_id, m.decode(raw)["s"] if raw else ""))

    def recorded(self, jobs: Sequence[Job], stored: bool) -> None:
        self.recorded_jobs += [(it.job.message_id, stored) for it in jobs]


def hooked_runtime(rig: Rig, channel: Hooked, **cfg: Any) -> Runtime:
    rt = rig.runtime(channel, **cfg)
    channel.redis, channel.keys = rig.redis, rig.keys
    return rt


async def one_outcome(rig: Rig, to: str) -> tuple[Hooked, e.MessageJob, e.MessageEvent]:
    """One job through the hooked toy (streaming): the toy, the job, its only event."""
    toy = Hooked(streams=True)
    j = rig.job(to)
    await rig.publish([j])
    rig.start(hooked_runtime(rig, toy))
    await rig.until("its outcome", lambda: bool(rig.of(j)))
    [ev] = rig.of(j)
    return toy, j, ev


async def test_text_markers_of_an_earlier_gateway_are_judged_like_the_runtimes_own(rig: Rig) -> None:
    """An earlier gateway's values, as it wrote them: a held claim of a process that is gone
    is taken over and sent; written without an outcome is ABANDONED; released is sent; the
    outcomes are re-published through the channel's reader, never sent."""
    toy = Toy()
    gone = f"vm-7-{uuid.uuid4().hex[:6]}:x"  # a process name may hold colons
    now = time.time()
    held, written, released, ok, refused = (rig.job("ok", i) for i in range(5))
    values = [(held, f"held:{gone}:{now - 3:.3f}"), (written, f"written:{gone}:{now - 3:.3f}"),
              (released, f"released:{now - 3:.3f}"), (ok, "ok:toy-earlier"),
              (refused, "failed:0x0000000B")]
    for j, value in values:
        await rig.redis.set(rig.keys.key(j.message_id, 1), value)
    jobs = [j for j, _ in values]
    await rig.publish(jobs)
    taken = sample("herald_coretest_claims_taken_over_total")
    rt = rig.runtime(toy)
    rt.markers.legacy = legacy_reader
    rig.start(rt)
    await rig.until("five outcomes", lambda: all(rig.of(j) for j in jobs))
    assert sorted(toy.wire) == sorted([held.message_id, released.message_id])
    assert sample("herald_coretest_claims_taken_over_total") - taken == 1
    [ev] = rig.of(written)
    assert ev.kind == K.MESSAGE_EVENT_KIND_FAILED and ev.error_code == "ABANDONED"
    [ev] = rig.of(ok)
    assert (ev.kind, ev.provider_message_id, ev.route) == (
        K.MESSAGE_EVENT_KIND_SUBMITTED, "toy-earlier", "old")
    [ev] = rig.of(refused)
    assert (ev.kind, ev.error_code) == (K.MESSAGE_EVENT_KIND_FAILED, "0x0000000B")
    assert await rig.redis.get(rig.keys.key(ok.message_id, 1)) == b"ok:toy-earlier"  # untouched


async def test_a_text_marker_held_by_a_live_process_waits_for_it(rig: Rig) -> None:
    toy = Toy()
    j = rig.job("ok")
    alive = "vm-8-live"
    await rig.redis.set(rig.keys.live + alive, "1", ex=30)
    await rig.redis.set(rig.keys.key(j.message_id, 1), f"held:{alive}:{time.time():.3f}")
    await rig.publish([j])
    busy = sample("herald_coretest_jobs_total", result="busy")
    rt = rig.runtime(toy)
    rt.markers.legacy = legacy_reader
    rig.start(rt)
    await rig.until("a busy look", lambda: sample("herald_coretest_jobs_total", result="busy") > busy)
    assert not toy.wire and not rig.of(j)
    await rig.redis.set(rig.keys.key(j.message_id, 1), "ok:toy-elsewhere")  # it finished there
    await rig.until("its outcome re-published", lambda: bool(rig.of(j)))
    [ev] = rig.of(j)
    assert (ev.kind, ev.provider_message_id) == (K.MESSAGE_EVENT_KIND_SUBMITTED, "toy-elsewhere")
    assert not toy.wire


async def test_handed_back_reopens_a_written_claim_and_sends_again(rig: Rig) -> None:
    toy, j, ev = await one_outcome(rig, "throttle")
    # no event for the refusal: only the outcome of the second try
    assert ev.kind == K.MESSAGE_EVENT_KIND_SUBMITTED
    assert toy.wire == [j.message_id, j.message_id]  # refused, then taken
    assert (await rig.marker(j) or {}).get("s") == m.SUBMITTED


async def test_parts_channel_data_and_own_event_ids_are_kept_and_replayed(rig: Rig) -> None:
    toy, j, ev = await one_outcome(rig, "ok")
    msg_id = f"{j.message_id}:submitted:1"
    assert ev.parts == 2 and ev.event_id == OWN_IDS(msg_id)
    marker = await rig.marker(j) or {}
    assert (marker["n"], marker["x"]) == (2, "part-1,part-2")
    await rig.publish([j], suffix=":again")
    await rig.until("the replay", lambda: len(rig.of(j)) == 2)
    again = rig.of(j)[1]
    assert (again.parts, again.event_id) == (2, ev.event_id)
    assert toy.wire == [j.message_id]


async def test_channel_writes_ride_the_commit_and_a_failing_recording_is_retried_in_place(
        rig: Rig) -> None:
    toy = Hooked(streams=True)
    jobs = [rig.job("ok", i) for i in range(3)]
    rt = hooked_runtime(rig, toy, record_retry_for=10.0)
    real = rt.markers.set_values
    failures = {"left": 3}

    async def flaky(*args: Any, **kw: Any) -> None:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise ConnectionError("redis went away")
        await real(*args, **kw)

    rt.markers.set_values = flaky  # type: ignore[method-assign]
    await rig.publish(jobs)
    rig.start(rt)
    await rig.until("three outcomes", lambda: all(rig.of(j) for j in jobs))
    await rig.until("recorded", lambda: len(toy.recorded_jobs) == 3)
    assert failures["left"] == 0
    assert sorted(toy.wire) == sorted(j.message_id for j in jobs)  # nothing handed back
    assert all(len(rig.of(j)) == 1 for j in jobs)
    # The channel's writes came after the outcome markers, each told it was stored.
    assert sorted(toy.writes) == sorted((j.message_id, m.SUBMITTED) for j in jobs)
    assert sorted(toy.recorded_jobs) == sorted((j.message_id, True) for j in jobs)
    await rig.until("acked", lambda: True)
    assert await rig.drained()


class OneAtATime(Toy):
    """Streams: each job of a batch answered on its own; "hold" jobs wait for `release`."""

    def __init__(self) -> None:
        super().__init__(streams=True)
        self.release = asyncio.Event()

    async def send(self, jobs: list[Job], gate: WriteGate, report: Report) -> None:
        async def one(job: Job) -> None:
            if await gate.commit(job) is not None:
                report.unwritten(job)
                return
            self.wire.append(job.job.message_id)
            if job.prepared.startswith("hold"):
                await self.release.wait()
            report.outcome(job, outcome.submitted(f"toy-{job.job.message_id}", "ok", "toy"))

        await asyncio.gather(*(one(j) for j in jobs))


async def test_the_in_flight_cap_in_jobs_frees_each_slot_as_its_job_settles(rig: Rig) -> None:
    """Four jobs in flight at most, one of them stuck at the carrier: the other slots keep
    taking jobs (a batch of the default mode would hold all four until the stuck one ends)."""
    toy = OneAtATime()
    stuck = rig.job("hold")
    others = [rig.job("ok", i) for i in range(12)]
    await rig.publish([stuck, *others])
    rig.start(rig.runtime(toy, max_in_flight=4, batch=4))
    await rig.until("every other job", lambda: all(rig.of(j) for j in others))
    assert not rig.of(stuck)
    toy.release.set()
    await rig.until("the stuck one", lambda: bool(rig.of(stuck)))
    await rig.until("acked", lambda: True)
    await rig.stop_all()
    assert await rig.drained()
