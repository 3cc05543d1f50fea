"""SMS delivery contract, through the in-process SMPP gateway against the real SMSC simulator
over TCP, with the session's real NATS JetStream and Redis:

- the SMSC receives the rendered text (template variables from the job), never the template;
- a multipart message whose later part is throttled ends DELIVERED although its first part's
  receipt comes before the last part is accepted and the SMSC never resends a receipt;
- after an SMSC restart that reissues message ids, receipts are credited to the message sent
  to the receipt's handset, never to an older message that had the same id;
- receipts credited to no message are counted by reason and logged at INFO.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid

import pytest
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from nats.js import JetStreamContext
from prometheus_client import REGISTRY

from gateways.smpp.simulator import SimulatorConfig, SmscSimulator
from tests.integration.test_smpp_features import gateway_on, mk_job, route
from tests.integration.test_smpp_gateway import EventLog, all_final, eventually, kinds, publish_jobs

K = e.MessageEventKind
S, D, F = K.MESSAGE_EVENT_KIND_SUBMITTED, K.MESSAGE_EVENT_KIND_DELIVERED, K.MESSAGE_EVENT_KIND_FAILED


def unmatched(reason: str) -> float:
    return REGISTRY.get_sample_value("herald_smpp_receipts_unmatched_total", {"reason": reason}) or 0.0


def personalised(run: str, i: int, text: str, **fields: str) -> e.MessageJob:
    job = mk_job(run, i, text=text)
    job.fields.update(fields)
    return job


async def test_the_smsc_receives_the_rendered_text(js: JetStreamContext, redis_client) -> None:  # type: ignore[no-untyped-def]
    sim = SmscSimulator(SimulatorConfig(receipt_delay=0.02, keep_texts=True))
    port = await sim.start()
    run = f"t{uuid.uuid4().hex[:6]}"
    long_name = "Bartholomew-Alexander " * 8  # 176 characters: the rendered text needs 2 parts
    jobs = [
        personalised(run, 101, "Hi {{ first_name }}, your code is {{ code }}.",
                     first_name="Alex", code="4821", phone="+447700900101"),
        personalised(run, 102, "Dear {{ full_name }}", full_name=long_name),
        personalised(run, 103, "Hi {{ first_name }, broken", first_name="Sam"),
        mk_job(run, 104, text="Plain text, no variables: 100% {not a template}"),
    ]
    ids = {j.message_id for j in jobs}
    try:
        async with gateway_on(js, redis_client, [route("default", port)]) as (_gw, subject), \
                EventLog(js, ids) as log:
            await publish_jobs(js, subject, jobs)
            await log.until(all_final(ids))
            await log.settle()
        texts = sim.stats.texts
        assert texts["447700900101"] == ["Hi Alex, your code is 4821."]
        assert texts["447700900102"] == [f"Dear {long_name}"]
        assert texts["447700900104"] == ["Plain text, no variables: 100% {not a template}"]
        assert "447700900103" not in sim.stats.attempts  # the raw template never left Herald
        ok, long_, broken, plain = (log.by_id[j.message_id] for j in jobs)
        assert kinds(ok) == [S, D] and kinds(plain) == [S, D]
        assert kinds(long_) == [S, D] and long_[0].parts == 2  # parts follow the rendered text
        assert kinds(broken) == [F]
        assert broken[0].error_code == "TEMPLATE_ERROR"
        assert broken[0].failure_category == c.FAILURE_CATEGORY_CONTENT_REJECTED
        assert "could not be rendered" in broken[0].error_description
        # The route that carried each message (the "Channel (ESME)" column); none for the
        # message that was never handed to an SMSC.
        assert [ev.route for ev in ok] == ["default", "default"]
        assert broken[0].route == ""
    finally:
        await sim.stop()


async def test_multipart_throttled_after_its_first_part_ends_delivered_without_resends(
        js: JetStreamContext, redis_client) -> None:  # type: ignore[no-untyped-def]
    """Part 2 is throttled (retried after throttle_delay) while part 1's receipt is already
    there; the SMSC never resends a receipt that was refused or unanswered."""
    sim = SmscSimulator(SimulatorConfig(receipt_delay=0.02, throttle_pattern="90020[12]$", throttle_part=2,
                                        resend_receipts=False, keep_texts=True))
    port = await sim.start()
    run = f"w{uuid.uuid4().hex[:6]}"
    text = "Your parcel is on its way and arrives tomorrow between 9 and 12. " * 3  # 2 parts
    jobs = [mk_job(run, 201, text=text), mk_job(run, 202, text=text), mk_job(run, 203, text=text)]
    ids = {j.message_id for j in jobs}
    try:
        async with gateway_on(js, redis_client, [route("default", port)], throttle_delay=1.5) as (_gw, subject), \
                EventLog(js, ids) as log:
            await publish_jobs(js, subject, jobs)
            await log.until(all_final(ids), timeout=30)
            await eventually(lambda: sim.stats.receipts_pending == 0)
            await log.settle()
        for j in jobs:
            evs = log.by_id[j.message_id]
            assert kinds(evs) == [S, D], (j.message_id, kinds(evs))
            assert evs[1].parts == 2 and evs[1].route == "default"
        st = sim.stats
        assert st.submits_throttled == 2  # part 2 of the first two messages
        assert st.submits_accepted == 6 and st.duplicate_submits == 0
        assert st.receipts_acked == 6 and st.receipts_refused == 0 and st.receipts_dropped == 0
        assert all(texts == [text] for texts in st.texts.values()) and len(st.texts) == 3
    finally:
        await sim.stop()


async def test_reissued_ids_after_an_smsc_restart_are_credited_to_the_right_messages(
        js: JetStreamContext, redis_client) -> None:  # type: ignore[no-untyped-def]
    """Default `auto` id format, hex ids in submit_sm_resp and decimal ones in receipts. The
    first messages' receipts never come (the SMSC restarts first); the restarted SMSC hands
    the same ids to new messages for other numbers: their receipts must credit them, not the
    first messages."""
    id_start = random.randrange(0x10000000, 0x70000000)  # this test's own ids in the shared Redis
    first = SmscSimulator(SimulatorConfig(id_style="mixed", id_start=id_start, receipt_delay=600))
    port = await first.start()
    second: SmscSimulator | None = None
    run = f"i{uuid.uuid4().hex[:6]}"
    before = [mk_job(run, i) for i in (301, 302, 303)]
    after = [mk_job(run, i) for i in (311, 312, 313)]
    ids = {j.message_id for j in [*before, *after]}
    try:
        async with gateway_on(js, redis_client, [route("default", port)]) as (_gw, subject), \
                EventLog(js, ids) as log:
            for j in before:  # one at a time: the ids follow the jobs' order
                await publish_jobs(js, subject, [j])
                await log.until(lambda by, m=j.message_id: S in kinds(by.get(m, [])))
            await first.stop()  # its pending receipts are gone with it
            second = SmscSimulator(SimulatorConfig(port=port, id_style="mixed", id_start=id_start,
                                                   receipt_delay=0.02, resend_receipts=False))
            await second.start()
            await eventually(lambda: second is not None and second.bound_connections == 1)
            for j in after:
                await publish_jobs(js, subject, [j])
                await log.until(lambda by, m=j.message_id: S in kinds(by.get(m, [])))
            await log.until(all_final({j.message_id for j in after}))
            await eventually(lambda: second is not None and second.stats.receipts_pending == 0)
            await log.settle()
        reissued = [log.by_id[j.message_id][0].provider_message_id for j in after]
        assert reissued == [log.by_id[j.message_id][0].provider_message_id for j in before]
        for j in after:
            evs = log.by_id[j.message_id]
            assert kinds(evs) == [S, D], (j.message_id, kinds(evs))
            assert evs[1].to == j.to
        for j in before:  # their receipts never came: nothing may be credited to them
            assert kinds(log.by_id[j.message_id]) == [S], (j.message_id, kinds(log.by_id[j.message_id]))
        assert second.stats.receipts_acked == 3 and second.stats.receipts_refused == 0
    finally:
        await first.stop()
        if second is not None:
            await second.stop()


async def test_unmatched_receipts_are_counted_by_reason_and_logged(
        js: JetStreamContext, redis_client, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    """An unknown id, and a known id from a handset the message was not sent to: neither is
    credited to any message by the gateway; both are counted under their reason and logged at
    INFO, once per reason however many come at once."""
    caplog.set_level(logging.INFO, logger="herald.smpp.gateway")
    sim = SmscSimulator(SimulatorConfig(receipt_delay=0.02, id_style="hex", resend_receipts=False,
                                        receipt_rules=(("900401$", "DELIVRD", 600.0),)))
    port = await sim.start()
    run = f"n{uuid.uuid4().hex[:6]}"
    job = mk_job(run, 401)  # its own receipt is far away: it stays SUBMITTED
    base = {r: unmatched(r) for r in ("unknown_id", "address_mismatch")}
    try:
        async with gateway_on(js, redis_client, [route("default", port)], receipt_match_wait=0.3) as (_gw, subject), \
                EventLog(js, {job.message_id}) as log:
            await publish_jobs(js, subject, [job])
            await log.until(lambda by: S in kinds(by.get(job.message_id, [])))
            smsc_id = log.by_id[job.message_id][0].provider_message_id
            unknown = [sim.inject_receipt(f"{random.randrange(0x71000000, 0x7FFFFFFF):08X}", "DELIVRD",
                                          f"4477009004{i:02d}") for i in range(3)]
            wrong_number = sim.inject_receipt(smsc_id, "DELIVRD", "447700900499")
            # Acknowledged, not refused: an unknown id goes to events.receipt.unmatched for the
            # campaigns ledger to match (many SMSCs never resend a refused receipt).
            assert await asyncio.gather(*unknown) == [True, True, True]
            assert await wrong_number is True  # acknowledged: a resend could not match it either
            await log.settle()
        assert kinds(log.by_id[job.message_id]) == [S]  # not credited
        assert unmatched("unknown_id") - base["unknown_id"] == 3
        assert unmatched("address_mismatch") - base["address_mismatch"] == 1
        lines = [r for r in caplog.records if r.name == "herald.smpp.gateway" and r.levelno == logging.INFO
                 and "matched no message" in r.getMessage()]
        reasons = sorted(getattr(r, "reason", "") for r in lines)
        assert reasons == ["address_mismatch", "unknown_id"], [r.getMessage() for r in lines]
        mismatch = next(r for r in lines if getattr(r, "reason", "") == "address_mismatch")
        assert mismatch.smsc_id == smsc_id and mismatch.source.endswith("499")  # type: ignore[attr-defined]
        assert "447700900" not in mismatch.source  # type: ignore[attr-defined]  # masked
    finally:
        await sim.stop()
