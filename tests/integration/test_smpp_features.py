"""SMPP gateway features end to end, over TCP against in-process SMSC simulators with the session's real
NATS JetStream and Redis: routes, throttling, a forced disconnect, id styles, multipart
receipts, command_status handling, replies and opt-outs, unmatched receipts, tx+rx pairs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from gateways.smpp.gateway import Gateway, GatewayConfig
from gateways.smpp.routes import IdFormat, RouteConfig
from gateways.smpp.session import ClientConfig
from gateways.smpp.simulator import SimulatorConfig, SmscSimulator
from shared import bus, eventbatch
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


def mk_job(run: str, i: int, sender: str = "HERALD", text: str | None = None,
           to: str | None = None) -> e.MessageJob:
    return e.MessageJob(message_id=f"{run}-{i:05d}", campaign_id=f"{run}-c", workspace_id="ws-smpp",
                        channel=c.CHANNEL_SMS, attempt=1, sender=sender,
                        to=to or f"+447700900{i % 1000:03d}", variant="A",
                        text=text if text is not None else f"Parcel {i} arrives today")


def route(name: str, port: int, **kw: object) -> RouteConfig:
    client_kw = {k: kw.pop(k) for k in list(kw) if k in ClientConfig.__dataclass_fields__}
    client = ClientConfig("127.0.0.1", port, "herald", name=name, reconnect_min=0.05,
                          reconnect_max=0.2, response_timeout=2.0, **client_kw)  # type: ignore[arg-type]
    return RouteConfig(name=name, client=client, **kw)  # type: ignore[arg-type]


@asynccontextmanager
async def gateway_on(js: JetStreamContext, redis_client, routes: list[RouteConfig],  # type: ignore[no-untyped-def]
                     **cfg: object) -> AsyncIterator[tuple[Gateway, str]]:
    run = f"f{uuid.uuid4().hex[:8]}"
    subject, durable = f"jobs.sms.{run}", f"smpp-{run}"
    cfg = {"throttle_delay": 0.05, **cfg}
    gw = Gateway(js, redis_client, routes, GatewayConfig(subject=subject, consumer=durable,
                                                          **cfg))  # type: ignore[arg-type]
    stop = asyncio.Event()
    runner = asyncio.create_task(gw.run(stop))
    try:
        assert await gw.wait_bound(5)
        yield gw, subject
        await wait_consumer_idle(js, durable)
    finally:
        stop.set()
        await asyncio.wait_for(runner, 30)
        await js.delete_consumer(bus.JOBS_STREAM, durable)


async def test_10k_messages_three_id_styles_throttling_and_a_forced_disconnect(
        js: JetStreamContext, redis_client) -> None:  # type: ignore[no-untyped-def]
    """Every message ends final, the simulators accepted no message twice, and every
    accepted message's receipt was matched (DELIVERED) whatever the id style."""
    sims = {
        "hexco": SmscSimulator(SimulatorConfig(id_style="hex", receipt_delay=0.02, throttle_every=97,
                                               receipt_retry_delay=0.05)),
        "decco": SmscSimulator(SimulatorConfig(id_style="decimal", receipt_delay=0.02,
                                               queue_full_every=89, receipt_mode="text",
                                               receipt_retry_delay=0.05)),
        "mixco": SmscSimulator(SimulatorConfig(id_style="mixed", receipt_delay=0.02, throttle_every=101,
                                               disconnect_after=1500, receipt_mode="tlv",
                                               receipt_retry_delay=0.05)),
    }
    ports = {n: await s.start() for n, s in sims.items()}
    routes = [
        route("hexco", ports["hexco"], senders=("HEXCO",), id_format=IdFormat.parse("hex:hex")),
        route("decco", ports["decco"], senders=("DECCO",), binds=2, window=50,
              id_format=IdFormat.parse("decimal")),
        route("mixco", ports["mixco"], senders=("MIXCO",)),  # auto: hex resp, decimal receipt
    ]
    senders = ["HEXCO", "DECCO", "MIXCO"]
    run = f"k{uuid.uuid4().hex[:6]}"
    jobs = [mk_job(run, i, sender=senders[i % 3]) for i in range(10_000)]
    ids = {j.message_id for j in jobs}
    try:
        async with gateway_on(js, redis_client, routes) as (gw, subject), EventLog(js, ids) as log:
            await publish_jobs(js, subject, jobs)
            await log.until(all_final(ids), timeout=100)
            await log.settle()
        unknown = 0
        for j in jobs:
            evs = log.by_id[j.message_id]
            if kinds(evs) == [F]:  # in flight when the SMSC dropped the connection
                assert evs[0].error_code == "CONNECTION_LOST", evs[0]
                assert evs[0].failure_category == FC.FAILURE_CATEGORY_UNKNOWN
                unknown += 1
                continue
            assert kinds(evs) == [S, D], (j.message_id, kinds(evs))
        # A response in flight when the connection dropped may be lost though the SMSC took
        # the message: that is why such a message is FAILED as unknown, never resubmitted.
        accepted = sum(s.stats.submits_accepted for s in sims.values())
        assert len(jobs) - unknown <= accepted <= len(jobs)
        for name, sim in sims.items():
            st = sim.stats
            assert st.duplicate_submits == 0, name
            if name != "mixco":
                assert st.receipts_acked == st.submits_accepted and st.receipts_dropped == 0, name
        assert sum(s.stats.receipts_acked for s in sims.values()) == len(jobs) - unknown
        assert sims["mixco"].stats.disconnects == 1 and 1 <= unknown <= 100
        assert sims["hexco"].stats.submits_throttled > 0 and sims["decco"].stats.submits_queue_full > 0
    finally:
        for s in sims.values():
            await s.stop()


async def test_ucs2_three_parts_second_undelivered_is_failed(
        js: JetStreamContext, redis_client) -> None:  # type: ignore[no-untyped-def]
    sim = SmscSimulator(SimulatorConfig(receipt_delay=0.02, fail_pattern="900002$", fail_part=2,
                                        receipt_retry_delay=0.05))
    port = await sim.start()
    run = f"u{uuid.uuid4().hex[:6]}"
    text = "Доставка завтра " * 10  # Cyrillic: UCS-2, 160 characters -> 3 parts of 67
    jobs = [mk_job(run, 1, text=text), mk_job(run, 2, text=text), mk_job(run, 3, text="€ {ok} " * 30)]
    ids = {j.message_id for j in jobs}
    try:
        async with gateway_on(js, redis_client, [route("default", port)]) as (_gw, subject), \
                EventLog(js, ids) as log:
            await publish_jobs(js, subject, jobs)
            await log.until(all_final(ids))
            await eventually(lambda: sim.stats.receipts_acked == 8)
            await log.settle()
        ok, bad, gsm = (log.by_id[j.message_id] for j in jobs)
        assert kinds(ok) == [S, D] and ok[0].parts == 3 and ok[1].parts == 3
        assert kinds(bad) == [S, F]
        assert bad[1].carrier_result == "UNDELIV" and bad[1].error_description.startswith("part 2 of 3")
        assert bad[1].failure_category == FC.FAILURE_CATEGORY_CARRIER_REJECTED
        assert kinds(gsm) == [S, D] and gsm[0].parts == 2  # GSM-7 with escapes: 210 -> 2 parts
        assert sim.stats.submits_accepted == 8 and sim.stats.duplicate_submits == 0
    finally:
        await sim.stop()


async def test_command_status_handling(js: JetStreamContext, redis_client) -> None:  # type: ignore[no-untyped-def]
    """Throttled / queue full: retried later and delivered; RSYSERR: retried with backoff,
    FAILED with its code after the limit; permanent refusal: FAILED with code, description
    and category, never retried."""
    sim = SmscSimulator(SimulatorConfig(receipt_delay=0.02, throttle_pattern="900001$",
                                        queue_full_every=7, syserr_pattern="90000[23]$",
                                        reject_pattern="900004$", reject_status=0x45))
    port = await sim.start()
    sim2 = SmscSimulator(SimulatorConfig(syserr_pattern="900003$", syserr_times=100))
    run = f"s{uuid.uuid4().hex[:6]}"
    jobs = [mk_job(run, i) for i in range(1, 10)]
    ids = {j.message_id for j in jobs}
    routes = [route("default", port), route("flaky", await sim2.start(), prefixes=("+447700900003",))]
    try:
        async with gateway_on(js, redis_client, routes, syserr_retries=2) as (gw, subject), \
                EventLog(js, ids) as log:
            await publish_jobs(js, subject, jobs)
            await log.until(all_final(ids))
            await log.settle()
        by = {int(m[-2:]): evs for m, evs in log.by_id.items()}
        qf = sim.stats.queue_full_by_dest  # every 7th submit is refused, whichever it is
        assert kinds(by[1]) == [S, D] and sim.stats.attempts["447700900001"] == 2 + qf["447700900001"]
        assert kinds(by[2]) == [S, D]  # one RSYSERR, then accepted
        assert sim.stats.attempts["447700900002"] == 2 + qf["447700900002"]
        assert kinds(by[3]) == [F] and sim2.stats.attempts["447700900003"] == 3    # 1 + 2 retries
        assert by[3][0].error_code == "0x00000008" and "ESME_RSYSERR" in by[3][0].error_description
        assert kinds(by[4]) == [F] and sim.stats.attempts["447700900004"] == 1
        assert by[4][0].error_code == "0x00000045"
        assert "ESME_RSUBMITFAIL" in by[4][0].error_description
        assert by[4][0].failure_category == FC.FAILURE_CATEGORY_CARRIER_REJECTED
        assert sim.stats.submits_queue_full >= 1 and sim.stats.duplicate_submits == 0
        assert all(kinds(by[i]) == [S, D] for i in range(5, 10))
        client = gw.routes["default"].clients[0]
        assert client.bucket.factor < 1.0  # slowed down (no throughput limit set: pause only)
    finally:
        await sim.stop()
        await sim2.stop()


async def test_receipts_late_unknown_and_duplicate(
        js: JetStreamContext, redis_client) -> None:  # type: ignore[no-untyped-def]
    """A late receipt is credited; a final receipt whose mapping never appears within
    receipt_match_wait is published on events.receipt.unmatched (the ledger matches it
    durably) and only then acknowledged, never refused; duplicates change nothing."""
    sim = SmscSimulator(SimulatorConfig(receipt_delay=0.02, receipt_rules=(("900001$", "DELIVRD", 1.5),),
                                        duplicate_receipts=True, receipt_retry_delay=0.05,
                                        receipt_max_attempts=4))
    port = await sim.start()
    run = f"a{uuid.uuid4().hex[:6]}"
    jobs = [mk_job(run, 1), mk_job(run, 2)]
    ids = {j.message_id for j in jobs}
    unmatched = await js.subscribe("events.receipt.unmatched", ordered_consumer=True,
                                   deliver_policy=DeliverPolicy.NEW)
    try:
        async with gateway_on(js, redis_client, [route("default", port)],
                              receipt_match_wait=0.3) as (gw, subject), \
                EventLog(js, ids) as log:
            await publish_jobs(js, subject, jobs)
            await log.until(lambda by: D in kinds(by.get(jobs[0].message_id, []))
                            and D in kinds(by.get(jobs[1].message_id, [])))
            # A receipt for an id nobody submitted (here): published, then acknowledged.
            sim.stats.receipts_pending += 1
            from gateways.smpp.simulator.server import _Outbound
            bogus = _Outbound(sim._receipt_body(  # noqa: SLF001
                _parse_sample(), "DEADBEEF", "DELIVRD"), "", None, asyncio.get_running_loop().create_future())
            sim._send_outbound(bogus)  # noqa: SLF001
            assert await bogus.done is True
            while True:  # the session's stream may hold other tests' unmatched receipts
                ev = e.UnmatchedReceipt.FromString((await unmatched.next_msg(timeout=5)).data)
                if "DEADBEEF" in ev.provider_ids:
                    break
            assert ev.source_address == "447700900555" and ev.stat == "DELIVRD" and ev.route == "default"
            assert {"deadbeef", str(0xDEADBEEF)} <= set(ev.provider_ids)
            await eventually(lambda: sim.stats.receipts_duplicated == 3)  # the bogus one's too
            await log.settle()
        assert kinds(log.by_id[jobs[0].message_id]) == [S, D]
        assert kinds(log.by_id[jobs[1].message_id]) == [S, D]
        assert sim.stats.receipts_dropped == 0 and sim.stats.receipts_refused == 0
    finally:
        await unmatched.unsubscribe()
        await sim.stop()


def _parse_sample():  # type: ignore[no-untyped-def]
    from gateways.smpp import pdu
    raw = pdu.encode_submit_sm(1, source_addr="HERALD", destination_addr="447700900555",
                               short_message=b"hello", registered_delivery=1)
    return pdu.parse_sm(raw)


async def test_replies_link_to_the_last_message_and_stop_opts_out(
        js: JetStreamContext, redis_client) -> None:  # type: ignore[no-untyped-def]
    sim = SmscSimulator(SimulatorConfig(receipt_delay=0.02))
    port = await sim.start()
    run = f"m{uuid.uuid4().hex[:6]}"
    sender = "447700900999"
    jobs = [mk_job(run, 1, sender=sender, to="+447700900101"),
            mk_job(run, 2, sender=sender, to="+447700900102")]
    ids = {j.message_id for j in jobs}
    contact = await js.subscribe("events.contact.opted_out", ordered_consumer=True,
                                 deliver_policy=DeliverPolicy.NEW)
    try:
        async with gateway_on(js, redis_client, [route("pair", port, bind_mode="pair")]) as (gw, subject), \
                EventLog(js, ids) as log:
            assert sim.bound_connections == 2  # transmitter + receiver
            await publish_jobs(js, subject, jobs)
            await log.until(all_final(ids))
            assert await sim.inject_mo("447700900101", sender, "Yes please, see you then")
            assert await sim.inject_mo("447700900102", sender, "Arrêt")
            assert await sim.inject_mo("447700900103", sender, "STOP")  # never messaged: unlinked
            await log.until(lambda by: all(
                K.MESSAGE_EVENT_KIND_REPLIED in kinds(by.get(m, [])) for m in ids))
            await log.settle()
            msg = await contact.next_msg(timeout=5)
        replies = {m: next(ev for ev in evs if ev.kind == K.MESSAGE_EVENT_KIND_REPLIED)
                   for m, evs in log.by_id.items()}
        r1, r2 = replies[jobs[0].message_id], replies[jobs[1].message_id]
        assert r1.reply_text == "Yes please, see you then" and r1.reply_from == "+447700900101"
        assert r1.campaign_id == jobs[0].campaign_id and r2.reply_text == "Arrêt"
        opt = e.ContactEvent.FromString(msg.data)
        assert opt.kind == e.CONTACT_EVENT_KIND_OPTED_OUT and opt.channel == c.CHANNEL_SMS
        assert (opt.address, opt.reason, opt.message_id, opt.workspace_id) == (
            "+447700900102", "ARRET", jobs[1].message_id, "ws-smpp")
        assert sim.stats.mo_acked == 3
    finally:
        await contact.unsubscribe()
        await sim.stop()


async def test_routes_choose_by_sender_and_prefix(js: JetStreamContext, redis_client) -> None:  # type: ignore[no-untyped-def]
    a, b = SmscSimulator(SimulatorConfig(receipt_delay=0.02)), SmscSimulator(SimulatorConfig(receipt_delay=0.02))
    pa, pb = await a.start(), await b.start()
    routes = [route("any", pa), route("uk900", pb, prefixes=("+44770090",), binds=2, throughput=500.0)]
    run = f"p{uuid.uuid4().hex[:6]}"
    jobs = [mk_job(run, 1, to="+447700900001"), mk_job(run, 2, to="+15550100"),
            mk_job(run, 3, to="+447700900003")]
    ids = {j.message_id for j in jobs}
    try:
        async with gateway_on(js, redis_client, routes) as (gw, subject), EventLog(js, ids) as log:
            await publish_jobs(js, subject, jobs)
            await log.until(all_final(ids))
        assert all(kinds(evs) == [S, D] for evs in log.by_id.values())
        assert set(b.stats.accepted) == {"447700900001", "447700900003"}
        assert set(a.stats.accepted) == {"15550100"}
        assert b.stats.binds == 2
    finally:
        await a.stop()
        await b.stop()


def test_route_config_replace_keeps_defaults() -> None:
    r = route("x", 1, window=7)
    assert replace(r.client, window=9).window == 9 and r.client.name == "x"


async def test_replies_reach_only_the_workspace_of_the_sender_they_answer(
        js: JetStreamContext, redis_client) -> None:  # type: ignore[no-untyped-def]
    """Two workspaces' senders (a sender belongs to one workspace) message the same number:
    a reply goes to the message of the sender it was sent to, in whatever form the SMSC
    writes that sender; a reply to a sender that sent nothing to that number is published
    to no workspace at all."""
    from prometheus_client import REGISTRY

    sim = SmscSimulator(SimulatorConfig(receipt_delay=0.02))
    port = await sim.start()
    run = f"w{uuid.uuid4().hex[:6]}"
    number = "+447700900121"
    a, b = mk_job(run, 1, sender="447700900991", to=number), mk_job(run, 2, sender="447700900992", to=number)
    a.workspace_id, b.workspace_id = "ws-a", "ws-b"
    ids = {a.message_id, b.message_id}
    sub = await js.subscribe("events.>", ordered_consumer=True, deliver_policy=DeliverPolicy.NEW)
    unlinked = REGISTRY.get_sample_value("herald_smpp_mo_messages_total", {"outcome": "unlinked"}) or 0.0
    try:
        async with gateway_on(js, redis_client, [route("default", port)]) as (_gw, subject), \
                EventLog(js, ids) as log:
            await publish_jobs(js, subject, [a, b])
            await log.until(all_final(ids))
            assert await sim.inject_mo("447700900121", "+447700900992", "STOP")
            assert await sim.inject_mo("447700900121", "447700900991", "Thanks")
            assert await sim.inject_mo("447700900121", "447700900993", "STOP")  # sent nothing
            await log.until(lambda by: all(K.MESSAGE_EVENT_KIND_REPLIED in kinds(by.get(m, [])) for m in ids))
            await log.settle()
        seen: list[tuple[str, str, str]] = []  # (subject, workspace, message) of replies and opt-outs
        while True:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except TimeoutError:
                break
            if msg.subject == "events.contact.opted_out":
                ev = e.ContactEvent.FromString(msg.data)
                if ev.address == number:
                    seen.append((msg.subject, ev.workspace_id, ev.message_id))
            elif msg.subject == "events.message.replied":
                seen += [(msg.subject, mev.workspace_id, mev.message_id)
                         for mev in eventbatch.events_of(msg) if mev.reply_from == number]
        assert sorted(seen) == sorted([
            ("events.message.replied", "ws-b", b.message_id),
            ("events.contact.opted_out", "ws-b", b.message_id),
            ("events.message.replied", "ws-a", a.message_id),
        ])
        assert REGISTRY.get_sample_value("herald_smpp_mo_messages_total", {"outcome": "unlinked"}) == unlinked + 1
    finally:
        await sub.unsubscribe()
        await sim.stop()
