"""A rolling upgrade: send markers and id mappings written by the SMPP gateway before it ran
on the channel runtime, as that gateway wrote them (literal values), judged by this one
against real NATS JetStream, Redis and the SMSC simulator (whose ground truth counts every
submit_sm):

- held by a process that is gone: taken over and sent once;
- written by a process that is gone, no outcome: ABANDONED, never sent;
- released (nothing was written): sent once;
- ok / failed / unknown: the recorded outcome re-published, nothing sent; an ok's id
  mappings are stored again from it, so a late receipt is still credited;
- held by a process that still lives: left to it (nothing sent) until its outcome is there;
- an id mapping in the earlier JSON form still credits its receipt.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from nats.js import JetStreamContext

from gateways.smpp.channel import MARKER_KEYS
from gateways.smpp.gateway import Gateway, GatewayConfig
from gateways.smpp.outcomes import ABANDONED_DESCRIPTION
from gateways.smpp.session import ClientConfig
from gateways.smpp.simulator import SimulatorConfig, SmscSimulator
from gateways.smpp.store import id_key
from shared import bus
from tests.integration.test_smpp_gateway import EventLog, kinds, publish_jobs, wait_consumer_idle

K = e.MessageEventKind
FC = c.FailureCategory
S, D, F = K.MESSAGE_EVENT_KIND_SUBMITTED, K.MESSAGE_EVENT_KIND_DELIVERED, K.MESSAGE_EVENT_KIND_FAILED


def sms(run: str, name: str, n: int) -> e.MessageJob:
    return e.MessageJob(message_id=f"{run}-{name}", campaign_id=f"{run}-c", workspace_id="ws-smpp",
                        channel=c.CHANNEL_SMS, attempt=1, sender="HERALD",
                        to=f"+44770099{n:04d}", variant="A", text=f"Your code is {n:04d}")


async def test_markers_and_mappings_of_the_gateway_before_the_runtime(
        js: JetStreamContext, redis_client) -> None:  # type: ignore[no-untyped-def]
    run = f"v{uuid.uuid4().hex[:8]}"
    subject, durable = f"jobs.sms.{run}", f"smpp-{run}"
    sim = SmscSimulator(SimulatorConfig(receipt_delay=0.02, receipt_retry_delay=0.05))
    port = await sim.start()
    gone = f"smpp-gw-7f9c-1-{uuid.uuid4().hex[:8]}"  # hostname-pid-uuid, its key long expired
    alive = f"smpp-gw-7f9d-2-{uuid.uuid4().hex[:8]}"
    await redis_client.set(f"herald:smpp:holder:{alive}", "1", px=60_000)
    t = f"{time.time() - 5:.3f}"
    jobs = {name: sms(run, name, n) for n, name in enumerate(
        ["held", "written", "released", "ok", "multipart", "refused", "timeout", "abandoned",
         "busy"], 1)}
    literal = {
        "held": f"held:{gone}:{t}", "written": f"written:{gone}:{t}", "released": f"released:{t}",
        "ok": "ok:default|39F99DD5", "multipart": "ok:default|0A000001,0A000002",
        "refused": "failed:0x0000000B", "timeout": "unknown:timeout",
        "abandoned": "unknown:abandoned", "busy": f"held:{alive}:{t}",
    }
    for name, value in literal.items():
        await redis_client.set(MARKER_KEYS.key(jobs[name].message_id, 1), value, ex=600)
    # A mapping in the JSON form of an earlier version, for a message sent before the upgrade.
    earlier = {"message_id": f"{run}-earlier", "campaign_id": f"{run}-c", "workspace_id": "ws-smpp",
               "attempt": 1, "smsc_id": "5A000001", "to": "+447700990077", "variant": "A",
               "part": 1, "parts": 1, "route": "default", "provider_id": "5A000001"}
    await redis_client.set(id_key("default", "5a000001"), json.dumps(earlier), ex=600)
    gateway = Gateway(js, redis_client, ClientConfig("127.0.0.1", port, "herald", window=10),
                      GatewayConfig(subject=subject, consumer=durable, throttle_delay=0.1))
    stop = asyncio.Event()
    runner = asyncio.create_task(gateway.run(stop))
    ids = {j.message_id for j in jobs.values()} | {earlier["message_id"]}
    settled = [n for n in jobs if n != "busy"]
    try:
        assert await gateway.wait_bound(5)
        async with EventLog(js, ids) as events:
            await publish_jobs(js, subject, list(jobs.values()))
            await events.until(lambda by: all(by.get(jobs[n].message_id) for n in settled))
            # the live holder's job: nothing sent here while it holds it; then it finishes
            assert not events.by_id.get(jobs["busy"].message_id)
            await redis_client.set(MARKER_KEYS.key(jobs["busy"].message_id, 1), "ok:default|7B000001")
            await events.until(lambda by: bool(by.get(jobs["busy"].message_id)))
            # receipts for the replayed ids and for the earlier mapping are still credited
            for smsc_id, job_to in (("39F99DD5", jobs["ok"].to), ("0A000001", jobs["multipart"].to),
                                    ("0A000002", jobs["multipart"].to), ("5A000001", earlier["to"])):
                assert await sim.inject_receipt(smsc_id, "DELIVRD", job_to.lstrip("+"))
            await events.until(lambda by: all(D in kinds(by.get(m, [])) for m in (
                jobs["ok"].message_id, jobs["multipart"].message_id, earlier["message_id"])))
            await wait_consumer_idle(js, durable)
            await events.settle()
        by = {n: events.by_id[j.message_id] for n, j in jobs.items()}
        assert kinds(by["held"]) == [S, D] and kinds(by["released"]) == [S, D]
        assert kinds(by["written"]) == [F]
        assert by["written"][0].error_code == "ABANDONED"
        assert by["written"][0].error_description == ABANDONED_DESCRIPTION
        assert by["written"][0].failure_category == FC.FAILURE_CATEGORY_UNKNOWN
        assert kinds(by["ok"]) == [S, D]
        assert (by["ok"][0].provider_message_id, by["ok"][0].parts, by["ok"][0].route) == (
            "39F99DD5", 1, "default")
        assert kinds(by["multipart"]) == [S, D] and by["multipart"][0].parts == 2
        assert by["multipart"][0].provider_message_id == "0A000001"
        assert kinds(by["refused"]) == [F] and by["refused"][0].error_code == "0x0000000B"
        assert "ESME_RINVDSTADR" in by["refused"][0].error_description
        assert by["refused"][0].failure_category == FC.FAILURE_CATEGORY_INVALID_ADDRESS
        assert kinds(by["timeout"]) == [F] and by["timeout"][0].error_code == "TIMEOUT"
        assert by["timeout"][0].failure_category == FC.FAILURE_CATEGORY_UNKNOWN
        assert kinds(by["abandoned"]) == [F] and by["abandoned"][0].error_code == "ABANDONED"
        assert kinds(by["busy"]) == [S] and by["busy"][0].provider_message_id == "7B000001"
        assert kinds(events.by_id[earlier["message_id"]]) == [D]
        # Ground truth: only the held (taken over) and released jobs reached the SMSC, once.
        st = sim.stats
        sent = {jobs["held"].to.lstrip("+"), jobs["released"].to.lstrip("+")}
        assert set(st.attempts) == sent and all(n == 1 for n in st.attempts.values())
        assert st.duplicate_submits == 0
    finally:
        stop.set()
        await asyncio.wait_for(runner, 30)
        await sim.stop()
        await js.delete_consumer(bus.JOBS_STREAM, durable)
