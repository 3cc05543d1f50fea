"""The channel runtime (gateways.core) with a tiny channel defined here, against the private
nats-server and redis-server: claims, the write gate, outcomes recorded then published,
replays, the abandon rules, streamed outcomes, deferrals, listeners and the drain.

The toy channel's "wire" is the ground truth of what reached its carrier."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import pytest
import redis.asyncio as aioredis
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig

from cli import procs
from gateways.core import markers as m
from gateways.core import outcome
from gateways.core.channel import Job, Report
from gateways.core.gate import WriteGate
from gateways.core.metrics import channel_metrics
from gateways.core.recorder import RetryPolicy
from gateways.core.runtime import Runtime, RuntimeConfig
from shared import bus, cache, epoch, eventbatch
from shared.adapters import nats_internals

pytestmark = pytest.mark.timeout(60)

K = e.MessageEventKind
METRICS = channel_metrics("coretest")  # registered once per test process
REASONS = {"worker_stopped": "a process wrote it and stopped", "redis_lost": "Redis lost it",
           "corrupt_marker": "unreadable marker"}


class Toy:
    """A carrier in memory. The job's address says what the carrier does: ok (accepts),
    defer (4xx-like), bad (refused by prepare), slow (answers after `slow` seconds)."""

    name = "coretest"
    channel = c.CHANNEL_SMS
    carrier = "toy carrier"
    metrics = METRICS

    def __init__(self, streams: bool = False) -> None:
        self.streams_outcomes = streams
        self.wire: list[str] = []  # message ids whose bytes went out
        self.gate_calls = 0
        self.slow = 0.0
        self.sending = asyncio.Event()
        self.hold_after_first: asyncio.Event | None = None
        self.listener = ToyListener()

    def batch_limit(self) -> int | None:
        return None

    def ref(self, job: e.MessageJob) -> str:
        return m.flat_json({"to": job.to})

    def prepare(self, job: e.MessageJob) -> Any:
        if job.to.startswith("bad"):
            return outcome.failed("refused by prepare", c.FAILURE_CATEGORY_INVALID_ADDRESS)
        return job.to

    async def send(self, jobs: list[Job], gate: WriteGate, report: Report) -> None:
        self.sending.set()
        refused = await gate.commit_many([j.ticket for j in jobs])
        self.gate_calls += 1
        for n, (job, why) in enumerate(zip(jobs, refused, strict=True)):
            if why is not None:
                report.unwritten(job)
                continue
            self.wire.append(job.job.message_id)
            if self.slow:
                await asyncio.sleep(self.slow)
            if job.prepared.startswith("defer"):
                report.outcome(job, outcome.deferred("451 try later", "451", route="toy"))
                continue
            ok = outcome.submitted(f"toy-{job.job.message_id}", "accepted", "toy", "0")
            report.accepted(job, ok)
            report.outcome(job, ok)
            if n == 0 and self.hold_after_first is not None:
                await self.hold_after_first.wait()

    def exhausted(self, last: outcome.Outcome, deliveries: int) -> outcome.Outcome:
        return outcome.failed(f"{last.description} (gave up after {deliveries})",
                              c.FAILURE_CATEGORY_THROTTLED, last.code)

    def abandon_meaning(self, reason: str) -> str:
        return REASONS[reason]

    def listeners(self) -> Sequence[ToyListener]:
        return [self.listener]


class ToyListener:
    def __init__(self) -> None:
        self.running = False
        self.started = self.stopped = 0

    async def start(self) -> None:
        self.running, self.started = True, self.started + 1

    async def stop(self) -> None:
        self.running, self.stopped = False, self.stopped + 1


class Rig:
    def __init__(self, js: JetStreamContext, redis: aioredis.Redis) -> None:
        self.js = js
        self.redis = redis
        tag = uuid.uuid4().hex[:8]
        self.subject = f"jobs.coretest.{tag}"
        self.durable = f"coretest-{tag}"
        self.events: list[e.MessageEvent] = []
        self.keys = m.MarkerKeys.for_channel(f"coretest{tag}")
        self.tasks: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    async def listen(self) -> None:
        async def got(msg: Any) -> None:
            self.events += [ev for ev in eventbatch.events_of(msg)
                            if ev.message_id.startswith(self.durable)]
        self.sub = await nats_internals.connection_of(self.js).subscribe("events.message.>", cb=got)

    def job(self, to: str, n: int = 0) -> e.MessageJob:
        return e.MessageJob(message_id=f"{self.durable}-{to}-{n}-{uuid.uuid4().hex[:6]}",
                            campaign_id="c1", workspace_id="w1", to=to, attempt=1)

    async def publish(self, jobs: list[e.MessageJob], suffix: str = "") -> None:
        for j in jobs:
            await self.js.publish(self.subject, j.SerializeToString(),
                                  headers={"Nats-Msg-Id": f"{j.message_id}:{j.attempt}{suffix}"})

    def runtime(self, channel: Toy, **cfg: Any) -> Runtime:
        markers = m.SendMarkers(self.redis, 600, lease=cfg.pop("lease", 30.0), keys=self.keys)
        policy = RetryPolicy(cfg.pop("max_attempts", 3), 0.2, 0.2)
        return Runtime(self.js, markers, channel, RuntimeConfig(
            durable=self.durable, subject=self.subject, ack_wait=cfg.pop("ack_wait", 5.0),
            batch=cfg.pop("batch", 16), policy=policy, **cfg))

    def start(self, rt: Runtime) -> asyncio.Task[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(rt.run(stop))
        self.tasks.append((stop, task))
        return task

    async def stop_all(self) -> None:
        for stop, task in self.tasks:
            stop.set()
            await asyncio.wait_for(task, 15)
        self.tasks.clear()

    def of(self, job: e.MessageJob) -> list[e.MessageEvent]:
        return [ev for ev in self.events if ev.message_id == job.message_id]

    async def until(self, what: str, ok: Callable[[], bool], timeout: float = 20) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if ok():
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")

    async def marker(self, job: e.MessageJob) -> dict[str, Any] | None:
        raw = await self.redis.get(self.keys.key(job.message_id, job.attempt))
        return None if raw is None else json.loads(raw)

    async def drained(self) -> bool:
        info = await self.js.consumer_info(bus.JOBS_STREAM, self.durable)
        return info.num_pending == 0 and info.num_ack_pending == 0


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis of this module's own: the tests move shared.epoch's key (a Redis loss)."""
    server = procs.start_redis(tmp_path_factory.mktemp("core-redis"))
    yield str(server.info["url"])
    server.stop()


@pytest.fixture
async def rig(js: JetStreamContext, own_redis: str) -> AsyncIterator[Rig]:
    redis = cache.connect(own_redis)
    r = Rig(js, redis)
    await r.listen()
    yield r
    await r.stop_all()
    await r.sub.unsubscribe()
    with contextlib.suppress(Exception):
        await js.delete_consumer(bus.JOBS_STREAM, r.durable)
    await redis.aclose()


def sample(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_jobs_sent_once_recorded_then_published_and_replayed(rig: Rig) -> None:
    toy = Toy()
    ok = [rig.job("ok", i) for i in range(5)]
    bad = rig.job("bad")
    await rig.publish([*ok, bad])
    rt = rig.runtime(toy)
    rig.start(rt)
    await rig.until("an outcome for every job", lambda: all(rig.of(j) for j in [*ok, bad]))
    assert sorted(toy.wire) == sorted(j.message_id for j in ok)
    assert toy.listener.running and toy.listener.started == 1
    assert toy.gate_calls == 1  # the batch's held -> written in one gate call
    for j in ok:
        [ev] = rig.of(j)
        assert (ev.kind, ev.provider_message_id, ev.route) == (
            K.MESSAGE_EVENT_KIND_SUBMITTED, f"toy-{j.message_id}", "toy")
        marker = await rig.marker(j)
        assert marker is not None and marker["s"] == m.SUBMITTED
        assert marker["p"] == f"toy-{j.message_id}"
    [ev] = rig.of(bad)
    assert ev.kind == K.MESSAGE_EVENT_KIND_FAILED and ev.error_description == "refused by prepare"
    assert await rig.redis.get(rig.keys.ref_key(ok[0].message_id)) == b'{"to":"ok"}'
    # The same jobs again (an operator's re-publish, a redelivery after a lost ack): the
    # recorded outcomes are re-published with the same event ids, nothing is sent.
    dup_before = sample("herald_coretest_jobs_total", result="duplicate")
    first_ids = {ev.message_id: ev.event_id for ev in rig.events}
    await rig.publish(ok, suffix=":again")
    await rig.until("replays", lambda: all(len(rig.of(j)) == 2 for j in ok))
    assert len(toy.wire) == len(ok)
    assert all(rig.of(j)[1].event_id == first_ids[j.message_id] for j in ok)
    assert sample("herald_coretest_jobs_total", result="duplicate") - dup_before == len(ok)
    await rig.until("acked", lambda: True)
    await rig.stop_all()
    assert toy.listener.stopped == 1 and not toy.listener.running
    assert await rig.drained()
    assert not await rig.redis.exists(rt.markers.live_key)  # retired: claims free at once


async def test_the_same_job_twice_in_one_batch_is_sent_once(rig: Rig) -> None:
    toy = Toy()
    j = rig.job("ok")
    await rig.publish([j])
    await rig.publish([j], suffix=":copy")
    rig.start(rig.runtime(toy))
    await rig.until("both copies settled", lambda: len(rig.of(j)) == 2)
    assert toy.wire == [j.message_id]
    assert {ev.event_id for ev in rig.of(j)} == {rig.of(j)[0].event_id}


async def test_claims_keep_refs_only_of_jobs_that_have_one(rig: Rig) -> None:
    """One claim call for jobs with and without a ref (the ref keys follow the marker keys,
    one per job that has a ref): each ref lands under its own job, none for the others, and
    a second claim neither takes the job nor rewrites its ref."""
    markers = m.SendMarkers(rig.redis, 600, keys=rig.keys)
    await markers.heartbeat()  # a live claimant: its held markers stand
    jobs = [rig.job("ok", n) for n in range(5)]
    refs: list[Any] = [None, {"to": "b"}, "", m.flat_json({"to": "d"}), None]
    claims = await markers.claim_many(
        [(j.message_id, 1, ref) for j, ref in zip(jobs, refs, strict=True)], markers.holder())
    assert [cl.claimed for cl in claims] == [True] * 5
    assert claims.keys == [rig.keys.key(j.message_id, 1) for j in jobs]
    assert [await markers.ref(j.message_id) for j in jobs] == [None, {"to": "b"}, None,
                                                               {"to": "d"}, None]
    for j in jobs:
        assert (await rig.marker(j) or {}).get("s") == m.HELD
    again = await markers.claim_many([(j.message_id, 1, {"to": "x"}) for j in jobs])
    assert [cl.claimed for cl in again] == [False] * 5
    assert await markers.ref(jobs[1].message_id) == {"to": "b"}
    assert await markers.ref(jobs[0].message_id) is None


async def test_abandon_rules_written_held_and_redis_lost(rig: Rig) -> None:
    toy = Toy()
    stopped = m.SendMarkers(rig.redis, 600, keys=rig.keys, owner="stopped-process")
    written, held, lost, fresh = rig.job("ok", 1), rig.job("ok", 2), rig.job("ok", 3), rig.job("ok", 4)
    # A stopped process claimed two jobs and wrote one of them to the carrier.
    holder = stopped.holder()
    claims = await stopped.claim_many([(j.message_id, 1, None) for j in (written, held)], holder)
    assert all(cl.claimed for cl in claims)
    assert await stopped.mark_written([m.Ticket(rig.keys.key(written.message_id, 1), holder)]) == [True]
    # A job delivered once before Redis lost its data (no marker), then the loss.
    await rig.publish([lost])
    pull = await rig.js.pull_subscribe(rig.subject, durable=rig.durable, stream=bus.JOBS_STREAM,
                                       config=ConsumerConfig(
                                           durable_name=rig.durable, filter_subject=rig.subject,
                                           ack_wait=5.0, max_ack_pending=10000))
    [first] = await pull.fetch(1, timeout=5)
    await first.nak()
    await asyncio.sleep(0.05)
    await rig.redis.set(epoch.KEY, repr(time.time()))
    await rig.publish([written, held, fresh])
    taken_before = sample("herald_coretest_claims_taken_over_total")
    stopped_before = sample("herald_coretest_abandoned_total", reason="worker_stopped")
    lost_before = sample("herald_coretest_abandoned_total", reason="redis_lost")
    rig.start(rig.runtime(toy))
    await rig.until("four outcomes", lambda: all(rig.of(j) for j in (written, held, lost, fresh)))
    for j, reason in ((written, "a process wrote it and stopped"), (lost, "Redis lost it")):
        [ev] = rig.of(j)
        assert ev.kind == K.MESSAGE_EVENT_KIND_FAILED and ev.error_code == "ABANDONED"
        assert ev.error_description == (
            f"ABANDONED: the toy carrier may have accepted it; not resent to avoid a duplicate "
            f"({reason}; retry the message to send it again)")
    assert sorted(toy.wire) == sorted([held.message_id, fresh.message_id])  # taken over, sent
    assert sample("herald_coretest_claims_taken_over_total") - taken_before == 1
    assert sample("herald_coretest_abandoned_total", reason="worker_stopped") - stopped_before == 1
    assert sample("herald_coretest_abandoned_total", reason="redis_lost") - lost_before == 1
    await pull.unsubscribe()


async def test_a_job_handed_back_unwritten_survives_a_redis_loss(rig: Rig) -> None:
    """Claimed, then another process took the claim over before the write (the gate says
    no): handed back. Redis then loses everything; the next delivery is known unsent here
    and goes out cleanly instead of ABANDONED."""
    toy = Toy()
    j = rig.job("ok")
    rt = rig.runtime(toy)
    original = toy.send

    async def steal_then_send(jobs: list[Job], gate: WriteGate, report: Report) -> None:
        if jobs[0].delivery == 1:  # another holder takes the claim before our write
            await rig.redis.set(rig.keys.key(j.message_id, 1), '{"s":"held","t":1,"o":"x","b":"1"}')
            await original(jobs, gate, report)
            await rig.redis.delete(rig.keys.key(j.message_id, 1))  # ...and the data set is lost
            await rig.redis.set(epoch.KEY, repr(time.time()))
            return
        await original(jobs, gate, report)

    toy.send = steal_then_send  # type: ignore[method-assign]
    await rig.publish([j])
    rig.start(rt)
    await rig.until("its outcome", lambda: bool(rig.of(j)))
    [ev] = rig.of(j)
    assert ev.kind == K.MESSAGE_EVENT_KIND_SUBMITTED
    assert toy.wire == [j.message_id]


async def test_deferred_then_exhausted_after_max_attempts(rig: Rig) -> None:
    toy = Toy()
    j = rig.job("defer")
    await rig.publish([j])
    rig.start(rig.runtime(toy, max_attempts=2))
    await rig.until("deferred then failed", lambda: len(rig.of(j)) == 2)
    kinds = [ev.kind for ev in rig.of(j)]
    assert kinds == [K.MESSAGE_EVENT_KIND_DEFERRED, K.MESSAGE_EVENT_KIND_FAILED]
    final = rig.of(j)[1]
    assert final.failure_category == c.FAILURE_CATEGORY_THROTTLED
    assert final.error_description == "451 try later (gave up after 2)"
    assert (await rig.marker(j) or {}).get("s") == m.FAILED
    await rig.until("acked", lambda: True)
    assert await rig.drained()


async def test_streamed_outcomes_are_recorded_while_the_batch_still_sends(rig: Rig) -> None:
    toy = Toy(streams=True)
    toy.hold_after_first = asyncio.Event()
    first, second = rig.job("ok", 1), rig.job("ok", 2)
    await rig.publish([first, second])
    rig.start(rig.runtime(toy))
    # The channel waits after its first answer: that outcome is on the bus (and its job
    # acked) before send() returns.
    await rig.until("the first outcome alone", lambda: bool(rig.of(first)))
    assert not rig.of(second)
    assert (await rig.marker(first) or {}).get("s") == m.SUBMITTED
    toy.hold_after_first.set()
    await rig.until("the second outcome", lambda: bool(rig.of(second)))
    assert toy.wire == [first.message_id, second.message_id]


async def test_drain_on_stop_finishes_the_batch_in_hand(rig: Rig) -> None:
    toy = Toy()
    toy.slow = 0.3
    jobs = [rig.job("ok", i) for i in range(3)]
    await rig.publish(jobs)
    rt = rig.runtime(toy)
    task = rig.start(rt)
    await asyncio.wait_for(toy.sending.wait(), 10)
    rig.tasks[0][0].set()  # SIGTERM while the batch is being sent
    await asyncio.wait_for(task, 10)
    assert all(len(rig.of(j)) == 1 for j in jobs)  # recorded and published before run() ended
    assert sorted(toy.wire) == sorted(j.message_id for j in jobs)
    assert await rig.drained()
    assert not await rig.redis.exists(rt.markers.live_key)


async def test_a_redis_outage_at_the_claim_is_one_warning_and_the_jobs_go_out_once(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    """Redis refuses the claims for a while: nothing is sent, the jobs come back and go out
    once when it answers again, and the log says so in one rate-limited warning (no ERROR
    with a traceback per fetched batch)."""
    toy = Toy()
    jobs = [rig.job("ok") for _ in range(3)]
    rt = rig.runtime(toy)
    real_claim = rt.markers.claim_many
    refusals = {"left": 4}

    async def redis_down(*args: Any, **kw: Any) -> Any:
        if refusals["left"] > 0:
            refusals["left"] -= 1
            raise ConnectionError("Error 111 connecting to redis")
        return await real_claim(*args, **kw)

    rt.markers.claim_many = redis_down  # type: ignore[method-assign]
    caplog.set_level(logging.INFO, logger="herald")
    await rig.publish(jobs)
    rig.start(rt)
    await rig.until("every outcome", lambda: all(rig.of(j) for j in jobs), timeout=30)
    assert refusals["left"] == 0
    assert sorted(toy.wire) == sorted(j.message_id for j in jobs)  # once each
    mine = [r for r in caplog.records if r.name == rt.log.name]
    warned = [r for r in mine if r.getMessage() == "claiming jobs failed; redelivering them"]
    assert warned and warned[0].levelno == logging.WARNING and not warned[0].exc_info
    assert "ConnectionError" in warned[0].reason  # type: ignore[attr-defined]
    assert not [r for r in mine if r.levelno >= logging.ERROR]


async def test_an_acceptance_is_written_once_and_by_the_recorder_when_the_gate_could_not(
        rig: Rig) -> None:
    """The carrier's acceptance rides the write gate's next Redis call; the recorder does not
    write the same marker again, unless that call failed: then it writes it itself, so every
    accepted job ends with its outcome marker either way."""
    toy = Toy(streams=True)
    jobs = [rig.job("ok", n) for n in range(6)]
    rt = rig.runtime(toy, batch=2)  # acceptances over several gate calls
    real_gate, real_set = rt.markers.mark_written, rt.markers.set_values
    recorded: list[str] = []
    failed_acceptances: list[str] = []

    async def gate(tickets: Any, accepted: Any = ()) -> Any:
        if accepted and not failed_acceptances:  # the first call carrying acceptances fails
            failed_acceptances.extend(k for k, _ in accepted)
            raise ConnectionError("Redis hiccup")
        return await real_gate(tickets, accepted)

    async def set_values(sets: Any, *args: Any, **kw: Any) -> Any:
        recorded.extend(k for k, _ in sets)
        return await real_set(sets, *args, **kw)

    rt.markers.mark_written = gate  # type: ignore[method-assign]
    rt.markers.set_values = set_values  # type: ignore[method-assign]
    await rig.publish(jobs)
    rig.start(rt)
    await rig.until("every outcome", lambda: all(rig.of(j) for j in jobs))
    for j in jobs:
        assert (await rig.marker(j) or {}).get("s") == m.SUBMITTED
    assert failed_acceptances, "an acceptance rode the gate"
    # Written by the recorder: exactly the acceptances whose gate call failed.
    assert sorted(set(recorded)) == sorted(set(failed_acceptances))
