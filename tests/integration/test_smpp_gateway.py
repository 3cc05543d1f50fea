"""The SMPP gateway end to end over real TCP, NATS JetStream and Redis, against the SMSC
simulator: jobs in, exactly one SUBMITTED then one DELIVERED/FAILED event per message out,
and the simulator's ground truth shows no duplicate submit.

Each test consumes its own jobs subject (jobs.sms.<test id>) with its own durable: the
session's NATS server is shared with other tests whose leftover jobs on jobs.sms (and
whose consumers) must not meet this gateway.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from cli import procs
from gateways.smpp.gateway import Gateway, GatewayConfig
from gateways.smpp.session import ClientConfig
from gateways.smpp.simulator import SimulatorConfig, SmscSimulator
from gateways.smpp.simulator.stats import read_ground_truth
from shared import bus, eventbatch

K = e.MessageEventKind
FC = c.FailureCategory
FINAL = {K.MESSAGE_EVENT_KIND_DELIVERED, K.MESSAGE_EVENT_KIND_FAILED}

Events = dict[str, list[e.MessageEvent]]


class EventLog:
    """What actually landed on the EVENTS stream (an ordered consumer from 'now'), as the
    consumers apply it: copies that JetStream de-duplicated are not there, and a copy stored
    again in a batch made up differently (a replayed outcome, a duplicated receipt: the same
    event_id) counts once, as the consumers de-duplicate it; `copies` counts those."""

    def __init__(self, js: JetStreamContext, ids: set[str]) -> None:
        self.js = js
        self.ids = ids
        self.by_id: Events = {}
        self.event_ids: set[str] = set()
        self.copies = 0

    async def __aenter__(self) -> EventLog:
        self.sub = await self.js.subscribe("events.message.>", ordered_consumer=True,
                                           deliver_policy=DeliverPolicy.NEW)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.sub.unsubscribe()

    async def _read(self, timeout: float) -> bool:
        try:
            msg = await self.sub.next_msg(timeout=timeout)
        except TimeoutError:
            return False
        for ev in eventbatch.events_of(msg):
            if ev.message_id not in self.ids:
                continue
            if ev.event_id in self.event_ids:
                self.copies += 1
                continue
            self.event_ids.add(ev.event_id)
            self.by_id.setdefault(ev.message_id, []).append(ev)
        return True

    async def until(self, done: Callable[[Events], bool], timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while not done(self.by_id):
                await self._read(1.0)

    async def settle(self) -> None:
        """Drain whatever else arrives (late duplicates would show up here)."""
        while await self._read(0.3):
            pass


def all_final(ids: set[str]) -> Callable[[Events], bool]:
    return lambda by_id: all(any(ev.kind in FINAL for ev in by_id.get(m, [])) for m in ids)


def job(i: int, run: str, text: str = "Your parcel arrives today") -> e.MessageJob:
    return e.MessageJob(message_id=f"{run}-m{i:03d}", campaign_id=f"{run}-camp",
                        workspace_id="ws-smpp", channel=c.CHANNEL_SMS, attempt=1, sender="HERALD",
                        to=f"+447700900{i:03d}", variant="A", text=text)


async def publish_jobs(js: JetStreamContext, subject: str, jobs: list[e.MessageJob],
                       suffix: str = "") -> None:
    await bus.publish_many(js, [(subject, j, f"{j.message_id}:{j.attempt}{suffix}") for j in jobs])


async def wait_consumer_idle(js: JetStreamContext, durable: str) -> None:
    async with asyncio.timeout(20):
        while True:
            info = await js.consumer_info(bus.JOBS_STREAM, durable)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return
            await asyncio.sleep(0.05)


def kinds(evs: list[e.MessageEvent]) -> list[int]:
    return [ev.kind for ev in evs]


async def test_gateway_process_200_jobs_against_simulator_process(
        js: JetStreamContext, nats_url: str, redis_url: str, workdir: Path) -> None:
    run = f"g{uuid.uuid4().hex[:8]}"
    subject, durable = f"jobs.sms.{run}", f"smpp-{run}"
    base = workdir / "smpp" / run
    base.mkdir(parents=True)
    stats_file = base / "smsc-stats.json"
    failing = {i for i in range(200) if i % 10 == 7 and i < 100}          # receipt UNDELIV
    rejected = {150, 151}                                                   # ESME_RINVDSTADR
    throttled = {160, 161, 162}                                             # first try throttled
    sim = procs.start_module("smsc-sim", "gateways.smpp.simulator", base, {
        "HERALD_SMPP_SIM_FAIL_PATTERN": r"7700900(0[0-9]7)$",
        "HERALD_SMPP_SIM_REJECT_PATTERN": r"77009001(50|51)$",
        "HERALD_SMPP_SIM_THROTTLE_PATTERN": r"77009001(60|61|62)$",
        "HERALD_SMPP_SIM_ID_STYLE": "mixed",
        "HERALD_SMPP_SIM_RECEIPT_DELAY": "0.05",
        "HERALD_SMPP_SIM_STATS_FILE": str(stats_file),
    })
    gw = None
    try:
        jobs = [job(i, run) for i in range(200)]
        two_parts = job(200, run, text="x" * 161)
        too_long = job(201, run, text="x" * 2000)
        ids = {j.message_id for j in [*jobs, two_parts, too_long]}
        async with EventLog(js, ids) as events:
            await publish_jobs(js, subject, [*jobs, two_parts, too_long])
            gw = procs.start_module("smpp-gw", "gateways.smpp", base, {
                "HERALD_NATS_URL": nats_url, "HERALD_REDIS_URL": redis_url,
                "HERALD_SMPP_HOST": "127.0.0.1", "HERALD_SMPP_PORT": str(sim.info["smpp_port"]),
                "HERALD_SMPP_JOBS_SUBJECT": subject, "HERALD_SMPP_CONSUMER": durable,
                "HERALD_SMPP_THROTTLE_DELAY": "0.2", "HERALD_SMPP_WINDOW": "50",
            })
            assert gw.info["smpp_bound"] is True and gw.info["grpc_port"] > 0
            await events.until(all_final(ids))
            # The same jobs again under new Nats-Msg-Ids (as after the duplicate window):
            # the gateway's Redis marker must keep them away from the SMSC.
            await publish_jobs(js, subject, jobs[:20], suffix=":again")
            await wait_consumer_idle(js, durable)
            await events.settle()

        by_id = events.by_id
        D, F, S = K.MESSAGE_EVENT_KIND_DELIVERED, K.MESSAGE_EVENT_KIND_FAILED, K.MESSAGE_EVENT_KIND_SUBMITTED
        for i, j in enumerate(jobs):
            evs = by_id[j.message_id]
            if i in rejected:
                assert kinds(evs) == [F], j.message_id
                assert evs[0].error_code == "0x0000000B"
                assert "ESME_RINVDSTADR" in evs[0].error_description
                assert evs[0].failure_category == FC.FAILURE_CATEGORY_INVALID_ADDRESS
                continue
            expected_final = F if i in failing else D
            assert kinds(evs) == [S, expected_final], (j.message_id, kinds(evs))
            sub, fin = evs
            assert len(sub.provider_message_id) == 8  # hex id from submit_sm_resp
            assert fin.provider_message_id == sub.provider_message_id
            assert (fin.campaign_id, fin.workspace_id, fin.to, fin.variant) == (
                j.campaign_id, "ws-smpp", j.to, "A")
            assert fin.status == (c.MESSAGE_STATUS_FAILED if i in failing else c.MESSAGE_STATUS_DELIVERED)
            if i in failing:
                assert fin.carrier_result == "UNDELIV"
                assert fin.failure_category == FC.FAILURE_CATEGORY_CARRIER_REJECTED
            else:
                assert fin.carrier_result == "DELIVRD"
            assert sub.event_id != fin.event_id
        two = by_id[two_parts.message_id]
        assert kinds(two) == [S, D] and two[0].parts == 2 and two[1].parts == 2
        long_evs = by_id[too_long.message_id]
        assert kinds(long_evs) == [F]
        assert long_evs[0].error_code == "TEXT_TOO_LONG"
        assert long_evs[0].failure_category == FC.FAILURE_CATEGORY_CONTENT_REJECTED

        # Metrics of the running process
        async with aiohttp.ClientSession() as http, \
                http.get(f"http://127.0.0.1:{gw.info['metrics_port']}/metrics") as resp:
            body = await resp.text()
        assert 'herald_smpp_binds_up{route="default"} 1.0' in body
        assert 'herald_smpp_submits_total{route="default",status="ESME_RTHROTTLED"} 3.0' in body
        assert 'herald_smpp_receipts_total{stat="UNDELIV"} 10.0' in body
        assert 'herald_smpp_jobs_total{outcome="duplicate"} 20.0' in body  # replays seen, not sent
        assert 'herald_smpp_window_in_use{route="default"} 0.0' in body  # all answered by now
        # 198 single-part messages accepted (2 rejected) + both parts of the long one
        assert 'herald_smpp_submits_total{route="default",status="ok"} 200.0' in body

        gw.stop()
        assert gw.popen.returncode == 0, gw.log_tail()
        sim.stop()
        truth = read_ground_truth(stats_file)
        dest = {i: f"447700900{i:03d}" for i in range(202)}
        for i in range(200):
            assert truth["attempts"][dest[i]] == (2 if i in throttled else 1), i
            assert truth["accepted"].get(dest[i], 0) == (0 if i in rejected else 1), i
        assert truth["attempts"][dest[200]] == 2  # one submit_sm per part
        assert dest[201] not in truth["attempts"]  # too long: never sent
        assert truth["receipts_acked"] == 200 and truth["duplicate_submits"] == 0 and truth["receipts_dropped"] == 0
        assert truth["unbinds"] == 1  # the gateway unbound politely on SIGTERM
    finally:
        if gw is not None:
            gw.stop()
        sim.stop()
        await js.delete_consumer(bus.JOBS_STREAM, durable)


async def test_receipts_racing_ahead_duplicated_and_unanswered_submits(
        js: JetStreamContext, redis_client) -> None:  # type: ignore[no-untyped-def]
    """In process: every receipt arrives before its submit_sm_resp (it waits in memory for
    its mapping: the SMSC here never resends a refused receipt) and twice; a submit that
    never gets a response is failed as unknown and not resubmitted."""
    run = f"r{uuid.uuid4().hex[:8]}"
    subject, durable = f"jobs.sms.{run}", f"smpp-{run}"
    sim = SmscSimulator(SimulatorConfig(receipt_first=True, duplicate_receipts=True,
                                        id_style="decimal", receipt_retry_delay=0.05,
                                        drop_pattern="900029$", resend_receipts=False))
    port = await sim.start()
    gateway = Gateway(js, redis_client,
                      ClientConfig("127.0.0.1", port, "herald", window=10, response_timeout=1.0),
                      GatewayConfig(subject=subject, consumer=durable))
    stop = asyncio.Event()
    jobs = [job(i, run) for i in range(30)]
    ids = {j.message_id for j in jobs}
    runner = asyncio.create_task(gateway.run(stop))
    try:
        async with EventLog(js, ids) as events:
            await publish_jobs(js, subject, jobs)
            await events.until(all_final(ids))
            await eventually(lambda: sim.stats.receipts_duplicated == 29)
            await wait_consumer_idle(js, durable)
            await events.settle()
        S, D, F = K.MESSAGE_EVENT_KIND_SUBMITTED, K.MESSAGE_EVENT_KIND_DELIVERED, K.MESSAGE_EVENT_KIND_FAILED
        for j in jobs[:29]:
            assert kinds(events.by_id[j.message_id]) == [S, D], j.message_id
        dropped = events.by_id[jobs[29].message_id]
        assert kinds(dropped) == [F]
        assert dropped[0].error_code == "TIMEOUT"
        assert dropped[0].failure_category == FC.FAILURE_CATEGORY_UNKNOWN
        st = sim.stats
        # Receipts sent ahead of their submit_sm_resp waited for their mapping, never refused.
        assert st.receipts_acked == 29 and st.receipts_dropped == 0 and st.receipts_refused == 0
        assert all(n == 1 for n in st.attempts.values()) and len(st.attempts) == 30
    finally:
        stop.set()
        await asyncio.wait_for(runner, 15)
        await sim.stop()
        await js.delete_consumer(bus.JOBS_STREAM, durable)


async def eventually(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if cond():
                return
            await asyncio.sleep(0.02)


async def test_redis_hiccup_after_the_smsc_accepted_does_not_lose_the_id(
        js: JetStreamContext, redis_client) -> None:  # type: ignore[no-untyped-def]
    """The SMSC accepted the submit, then recording it in Redis fails a few times: the
    gateway retries in place, so the id is kept, the receipt matches and nothing is
    resubmitted or given up as abandoned."""
    run = f"h{uuid.uuid4().hex[:8]}"
    subject, durable = f"jobs.sms.{run}", f"smpp-{run}"
    sim = SmscSimulator(SimulatorConfig(receipt_delay=0.05, receipt_retry_delay=0.05))
    port = await sim.start()
    gateway = Gateway(js, redis_client, ClientConfig("127.0.0.1", port, "herald", window=10),
                      GatewayConfig(subject=subject, consumer=durable))
    real_record = gateway.recorder.store
    failures = {"left": 6}

    async def flaky_record(jobs: list, *args: Any) -> None:  # type: ignore[type-arg]
        if failures["left"] > 0:
            failures["left"] -= 1
            raise ConnectionError("redis went away")
        await real_record(jobs, *args)

    gateway.recorder.store = flaky_record  # type: ignore[method-assign]
    stop = asyncio.Event()
    jobs = [job(i, run) for i in range(10)]
    ids = {j.message_id for j in jobs}
    runner = asyncio.create_task(gateway.run(stop))
    try:
        async with EventLog(js, ids) as events:
            await publish_jobs(js, subject, jobs)
            await events.until(all_final(ids), timeout=20)
            await wait_consumer_idle(js, durable)
            await events.settle()
        S, D = K.MESSAGE_EVENT_KIND_SUBMITTED, K.MESSAGE_EVENT_KIND_DELIVERED
        assert all(kinds(events.by_id[m]) == [S, D] for m in ids)
        assert failures["left"] == 0
        assert sim.stats.submits_total == 10 and sim.stats.receipts_dropped == 0
    finally:
        stop.set()
        await asyncio.wait_for(runner, 15)
        await sim.stop()
        await js.delete_consumer(bus.JOBS_STREAM, durable)
