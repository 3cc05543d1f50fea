"""SMPP gateway durability: what a crash or a Redis loss may and may not do, against real
NATS JetStream, Redis and the SMSC simulator (its ground truth counts every submit_sm).

- A gateway killed with jobs fetched but not written: those jobs are sent cleanly after
  the restart (each exactly once at the SMSC); only jobs actually written to the socket can
  become ABANDONED ("the SMSC may have accepted it").
- Redis loses everything mid-campaign: no destination gets a message twice, receipts of
  messages submitted before the loss reach events.receipt.unmatched, every job ends with
  an outcome, and the log lines say why.
- Jobs handed back unwritten while Redis lost its data are sent cleanly, not ABANDONED.
- Duplicated receipts of multipart messages change nothing.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import REGISTRY

from cli import procs
from gateways.smpp import receipts
from gateways.smpp.channel import MARKER_KEYS
from gateways.smpp.gateway import Gateway, GatewayConfig
from gateways.smpp.outcomes import ABANDONED_DESCRIPTION
from gateways.smpp.session import ClientConfig
from gateways.smpp.simulator import SimulatorConfig, SmscSimulator
from shared import bus
from tests.integration.test_smpp_gateway import (
    EventLog,
    all_final,
    eventually,
    kinds,
    publish_jobs,
    wait_consumer_idle,
)

K = e.MessageEventKind
FC = c.FailureCategory
S, D, F = K.MESSAGE_EVENT_KIND_SUBMITTED, K.MESSAGE_EVENT_KIND_DELIVERED, K.MESSAGE_EVENT_KIND_FAILED


def sms(run: str, i: int, to: str, text: str | None = None) -> e.MessageJob:
    return e.MessageJob(message_id=f"{run}-{i:03d}", campaign_id=f"{run}-c", workspace_id="ws-smpp",
                        channel=c.CHANNEL_SMS, attempt=1, sender="HERALD", to=to, variant="A",
                        text=text or f"Your code is {i:03d}")


def abandoned_count(reason: str) -> float:
    return REGISTRY.get_sample_value("herald_smpp_abandoned_total", {"reason": reason}) or 0.0


def assert_abandoned(ev: e.MessageEvent) -> None:
    assert ev.kind == F and ev.error_code == "ABANDONED", ev
    assert ev.error_description == ABANDONED_DESCRIPTION
    assert ev.failure_category == FC.FAILURE_CATEGORY_UNKNOWN


def log_lines(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith(message)]


async def test_killed_gateway_resends_held_jobs_cleanly_and_abandons_only_written_ones(
        js: JetStreamContext, nats_url: str, redis_url: str, redis_client, workdir: Path,  # type: ignore[no-untyped-def]
        caplog: pytest.LogCaptureFixture) -> None:
    """A gateway process with window 5 writes 5 submits the SMSC never answers, holds the 45
    jobs behind them (fetched, claimed, not written) and is SIGKILLed. After the restart the
    45 are sent exactly once each and DELIVERED; only the 5 written ones are ABANDONED (the
    SMSC may have accepted them) and none of those is written again."""
    caplog.set_level(logging.INFO, logger="herald.smpp.gateway")
    run = f"x{uuid.uuid4().hex[:8]}"
    subject, durable = f"jobs.sms.{run}", f"smpp-{run}"
    # The durable made here with a short ack wait: the killed gateway's jobs come back soon.
    await js.add_consumer(bus.JOBS_STREAM, ConsumerConfig(
        durable_name=durable, filter_subject=subject, ack_policy=AckPolicy.EXPLICIT,
        ack_wait=3.0, max_ack_pending=10000))
    sim = SmscSimulator(SimulatorConfig(receipt_delay=0.02, receipt_retry_delay=0.05,
                                        drop_pattern="77009909[0-4]$"))
    port = await sim.start()
    written = [sms(run, i, f"+4477009909{i}") for i in range(5)]        # never answered
    held = [sms(run, 100 + i, f"+447700991{i:03d}") for i in range(45)]  # queued behind them
    ids = {j.message_id for j in [*written, *held]}
    base = workdir / "smpp" / run
    base.mkdir(parents=True)
    before = abandoned_count("abandoned")
    # In a thread: it waits for the ready line, and the simulator (this loop) must answer the bind.
    gw = await asyncio.to_thread(procs.start_module, "smpp-gw", "gateways.smpp", base, {
        "HERALD_NATS_URL": nats_url, "HERALD_REDIS_URL": redis_url,
        "HERALD_SMPP_HOST": "127.0.0.1", "HERALD_SMPP_PORT": str(port),
        "HERALD_SMPP_JOBS_SUBJECT": subject, "HERALD_SMPP_CONSUMER": durable,
        "HERALD_SMPP_WINDOW": "5", "HERALD_SMPP_RESPONSE_TIMEOUT": "60",
        "HERALD_SMPP_HOLDER_TTL": "1",
    })
    assert gw.info["smpp_bound"] is True
    stop = asyncio.Event()
    runner: asyncio.Task[None] | None = None
    try:
        async with EventLog(js, ids) as events:
            await publish_jobs(js, subject, [*written, *held])  # in this order: FIFO per bind

            await eventually(lambda: sim.stats.submits_total == 5)
            markers = [MARKER_KEYS.key(j.message_id, 1) for j in [*written, *held]]
            async with asyncio.timeout(20):  # every job fetched and claimed
                while await redis_client.exists(*markers) < 50:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            gw.kill()  # SIGKILL: nothing recorded, nothing handed back
            assert sim.stats.submits_total == 5 and not events.by_id

            gateway = Gateway(js, redis_client,
                              ClientConfig("127.0.0.1", port, "herald", window=10, response_timeout=2.0),
                              GatewayConfig(subject=subject, consumer=durable, holder_ttl=1.0,
                                            throttle_delay=0.1))
            runner = asyncio.create_task(gateway.run(stop))
            await events.until(all_final(ids), timeout=60)
            await wait_consumer_idle(js, durable)
            await events.settle()
        for j in held:
            assert kinds(events.by_id[j.message_id]) == [S, D], (j.message_id, kinds(events.by_id[j.message_id]))
        for j in written:
            evs = events.by_id[j.message_id]
            assert kinds(evs) == [F], kinds(evs)
            assert_abandoned(evs[0])
        st = sim.stats
        assert st.duplicate_submits == 0 and st.submits_total == 50
        assert all(n == 1 for n in st.attempts.values()) and len(st.attempts) == 50
        assert st.receipts_acked == 45
        assert abandoned_count("abandoned") == before + 5
        lines = log_lines(caplog, "job abandoned: the SMSC may have accepted it")
        assert lines and lines[0].levelno == logging.WARNING
        assert {getattr(r, "reason", None) for r in lines} == {"abandoned"}
    finally:
        gw.kill()
        stop.set()
        if runner is not None:
            await asyncio.wait_for(runner, 30)
        await sim.stop()
        await js.delete_consumer(bus.JOBS_STREAM, durable)


async def test_redis_loss_mid_campaign_sends_nothing_twice_and_publishes_unmatched_receipts(
        js: JetStreamContext, redis_client, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    """A: 20 messages submitted, their receipts still at the SMSC. B: 10 messages accepted by
    the SMSC, then Redis loses everything (FLUSHALL) while their outcomes are recorded, so the
    jobs come back with no marker. C: 10 messages after the loss. Receipts (each sent twice)
    come only then. No destination gets a second message; B is ABANDONED (redis_lost), C is
    delivered, the receipts of A and B are published once each on events.receipt.unmatched
    with the SUBMITTED provider id and the handset, and acknowledged."""
    caplog.set_level(logging.INFO, logger="herald.smpp.gateway")
    run = f"l{uuid.uuid4().hex[:8]}"
    subject, durable = f"jobs.sms.{run}", f"smpp-{run}"
    sim = SmscSimulator(SimulatorConfig(hold_receipts=True, duplicate_receipts=True,
                                        receipt_retry_delay=0.05, id_style="mixed"))
    port = await sim.start()
    jobs = [sms(run, i, f"+447700992{i:03d}") for i in range(40)]
    a, b, c_ = jobs[:20], jobs[20:30], jobs[30:]
    b_ids = {j.message_id for j in b}
    ids = {j.message_id for j in jobs}
    gateway = Gateway(js, redis_client, ClientConfig("127.0.0.1", port, "herald", window=20),
                      GatewayConfig(subject=subject, consumer=durable, receipt_match_wait=0.3,
                                    record_retry_for=0.3, throttle_delay=0.1))
    real_record = gateway.recorder.store
    lost = {"done": False}

    async def record_then_lose_redis(jobs: list, *args: Any) -> None:  # type: ignore[type-arg]
        """B's first recording: Redis loses everything, and the recording fails."""
        if any(it.job.message_id in b_ids and it.delivery == 1 for it in jobs):
            if not lost["done"]:
                await redis_client.flushall()
                lost["done"] = True
            raise ConnectionError("Redis lost its data set")
        await real_record(jobs, *args)

    gateway.recorder.store = record_then_lose_redis  # type: ignore[method-assign]
    unmatched = await js.subscribe("events.receipt.unmatched", ordered_consumer=True,
                                   deliver_policy=DeliverPolicy.NEW)
    before = abandoned_count("redis_lost")
    stop = asyncio.Event()
    runner = asyncio.create_task(gateway.run(stop))
    mine = {receipts.number_digits(j.to) for j in jobs}
    got: list[e.UnmatchedReceipt] = []

    async def read_unmatched(timeout: float) -> bool:
        try:
            msg = await unmatched.next_msg(timeout=timeout)
        except TimeoutError:
            return False
        ev = e.UnmatchedReceipt.FromString(msg.data)
        if receipts.number_digits(ev.source_address) in mine:
            got.append(ev)
        return True

    try:
        assert await gateway.wait_bound(5)
        async with EventLog(js, ids) as events:
            await publish_jobs(js, subject, a)
            await events.until(lambda by: all(S in kinds(by.get(j.message_id, [])) for j in a))
            await wait_consumer_idle(js, durable)
            await publish_jobs(js, subject, b)
            await events.until(lambda by: all(by.get(m) for m in b_ids), timeout=30)
            await wait_consumer_idle(js, durable)
            await publish_jobs(js, subject, c_)
            await events.until(lambda by: all(S in kinds(by.get(j.message_id, [])) for j in c_))
            assert sim.stats.duplicate_submits == 0  # B was not submitted again
            assert sim.release_receipts() == 40
            await events.until(all_final({j.message_id for j in c_}))
            async with asyncio.timeout(30):
                while len({ev.event_id for ev in got}) < 30:
                    await read_unmatched(1.0)
            await eventually(lambda: sim.stats.receipts_acked == 40 and sim.stats.receipts_duplicated == 40)
            await wait_consumer_idle(js, durable)
            await events.settle()
            while await read_unmatched(0.5):
                pass
        by = events.by_id
        # Ground truth first: no destination got a second message.
        assert sim.stats.duplicate_submits == 0, sim.stats.duplicate_submits
        for j in a:
            assert kinds(by[j.message_id]) == [S], kinds(by[j.message_id])
        for j in b:
            evs = by[j.message_id]
            assert kinds(evs) == [F], kinds(evs)
            assert_abandoned(evs[0])
        for j in c_:
            assert kinds(by[j.message_id]) == [S, D]
        # Ground truth: every destination got exactly one message.
        st = sim.stats
        assert st.duplicate_submits == 0 and st.submits_total == 40
        assert all(n == 1 for n in st.attempts.values()) and len(st.attempts) == 40
        assert st.receipts_dropped == 0 and st.receipts_refused == 0
        # One UnmatchedReceipt per receipt of A and B (their duplicates de-duplicated), each
        # naming the handset and, among its readings of the id, the SUBMITTED provider id.
        assert len(got) == 30 and len({ev.event_id for ev in got}) == 30
        by_number = {receipts.number_digits(ev.source_address): ev for ev in got}
        assert set(by_number) == {receipts.number_digits(j.to) for j in [*a, *b]}
        for j in a:
            ev = by_number[receipts.number_digits(j.to)]
            assert by[j.message_id][0].provider_message_id in ev.provider_ids, (ev, by[j.message_id][0])
            assert ev.stat == "DELIVRD" and ev.route == "default"
        assert abandoned_count("redis_lost") == before + 10
        lines = log_lines(caplog, "job abandoned: the SMSC may have accepted it")
        assert {getattr(r, "reason", None) for r in lines} == {"redis_lost"}
        failed = log_lines(caplog, "recording outcomes failed")
        assert failed and all(getattr(r, "error", "") == "ConnectionError: Redis lost its data set"
                              for r in failed)
    finally:
        stop.set()
        await asyncio.wait_for(runner, 30)
        await unmatched.unsubscribe()
        await sim.stop()
        await js.delete_consumer(bus.JOBS_STREAM, durable)


async def test_jobs_handed_back_unwritten_before_redis_lost_its_data_are_sent_cleanly(
        js: JetStreamContext, redis_client) -> None:  # type: ignore[no-untyped-def]
    """The write gate fails for ten claimed jobs (Redis goes away, and comes back with nothing):
    none of them was written, the gateway hands them back and saw that itself. Their next
    delivery, to the same gateway, must be sent once, not ABANDONED as "possibly sent"."""
    run = f"u{uuid.uuid4().hex[:8]}"
    subject, durable = f"jobs.sms.{run}", f"smpp-{run}"
    sim = SmscSimulator(SimulatorConfig())
    port = await sim.start()
    jobs = [sms(run, i, f"+447700993{i:03d}") for i in range(10)]
    ids = {j.message_id for j in jobs}
    gateway = Gateway(js, redis_client, ClientConfig("127.0.0.1", port, "herald", window=20),
                      GatewayConfig(subject=subject, consumer=durable, throttle_delay=0.1))
    real_gate = gateway.markers.mark_written
    lost = {"done": False}

    async def lose_redis_at_the_gate(tickets, accepted=()):  # type: ignore[no-untyped-def]
        if not lost["done"]:
            lost["done"] = True
            await redis_client.flushall()
            raise ConnectionError("Redis went away")
        return await real_gate(tickets, accepted)

    gateway.markers.mark_written = lose_redis_at_the_gate  # type: ignore[method-assign]
    before = abandoned_count("redis_lost")
    stop = asyncio.Event()
    runner = asyncio.create_task(gateway.run(stop))
    try:
        assert await gateway.wait_bound(5)
        async with EventLog(js, ids) as events:
            await publish_jobs(js, subject, jobs)
            await events.until(all_final(ids), timeout=30)
            await wait_consumer_idle(js, durable)
            await events.settle()
        assert lost["done"]
        for j in jobs:
            assert kinds(events.by_id[j.message_id]) == [S, D], (j.message_id, events.by_id[j.message_id])
        st = sim.stats
        assert st.submits_total == 10 and st.duplicate_submits == 0
        assert abandoned_count("redis_lost") == before
    finally:
        stop.set()
        await asyncio.wait_for(runner, 30)
        await sim.stop()
        await js.delete_consumer(bus.JOBS_STREAM, durable)


async def test_duplicated_receipts_of_multipart_messages_change_nothing(
        js: JetStreamContext, redis_client) -> None:  # type: ignore[no-untyped-def]
    """Every receipt twice, three parts each, one message with its second part undelivered:
    one SUBMITTED and one final event each, as without duplicates."""
    run = f"d{uuid.uuid4().hex[:8]}"
    subject, durable = f"jobs.sms.{run}", f"smpp-{run}"
    sim = SmscSimulator(SimulatorConfig(receipt_delay=0.02, duplicate_receipts=True, fail_pattern="993002$",
                                        fail_part=2, receipt_retry_delay=0.05))
    port = await sim.start()
    text = "Доставка завтра " * 10  # UCS-2: 3 parts
    jobs = [sms(run, 1, "+447700993001", text), sms(run, 2, "+447700993002", text)]
    ids = {j.message_id for j in jobs}
    gateway = Gateway(js, redis_client, ClientConfig("127.0.0.1", port, "herald", window=10),
                      GatewayConfig(subject=subject, consumer=durable))
    stop = asyncio.Event()
    runner = asyncio.create_task(gateway.run(stop))
    try:
        async with EventLog(js, ids) as events:
            await publish_jobs(js, subject, jobs)
            await events.until(all_final(ids))
            await eventually(lambda: sim.stats.receipts_duplicated == 6 and sim.stats.receipts_acked == 6)
            await wait_consumer_idle(js, durable)
            await events.settle()
        ok, bad = (events.by_id[j.message_id] for j in jobs)
        assert kinds(ok) == [S, D] and kinds(bad) == [S, F]
        assert bad[1].error_description.startswith("part 2 of 3")
        assert sim.stats.submits_accepted == 6 and sim.stats.duplicate_submits == 0
    finally:
        stop.set()
        await asyncio.wait_for(runner, 15)
        await sim.stop()
        await js.delete_consumer(bus.JOBS_STREAM, durable)
