"""Stats contract, through the full stack (real tokens, campaigns, gateways, SMSC simulator):

- a campaign unknown in the caller's workspace is NOT_FOUND (unknown or another workspace's),
  never a page of zeros; a malformed id is INVALID_ARGUMENT; a campaign that exists but has
  no message yet reads as zeros for its own workspace;
- `sending` counts the dispatcher's hand-overs to a gateway (it used to stay 0);
- after a message failed at build is retried, stats and the campaign's Progress agree on
  every counter (stats used to keep the first attempt's FAILED).
"""

from __future__ import annotations

import time

import aiohttp
import grpc
import pytest
from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from herald.v1 import recipients_pb2 as rpb
from herald.v1 import stats_pb2 as spb

from shared import bus, states
from shared.errors import field_violations
from shared.timeutil import now_ts
from tests.contract import stack
from tests.contract.stack import Caller, ContractStack

SENDER = "HERALD"  # ws-a's SMS sender in the contract suite
# Progress field -> CampaignStats field: one definition of each counter.
SAME = {"total": "total", "processed": "processed", "sent": "sent", "delivered": "delivered",
        "errors": "failed", "opted_out": "opted_out", "queued": "queued", "sending": "sending",
        "submitted": "submitted", "assumed_delivered": "assumed_delivered",
        "deferred": "deferred", "cancelled": "cancelled"}


def progress_of(cp: cpb.Campaign) -> dict[str, int]:
    return {s: getattr(cp.progress, p) for p, s in SAME.items()}


def counters_of(st: spb.CampaignStats) -> dict[str, int]:
    return {s: getattr(st, s) for s in SAME.values()}


async def code_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    return err.value.code()


async def stats_events(cs: ContractStack, kind: str) -> float:
    """Events of a kind the stats service applied or found already superseded."""
    url = f"http://127.0.0.1:{cs.stack.procs['stats'].info['metrics_port']}/metrics"
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        text = await r.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(f'herald_stats_events_total{{kind="{kind}",') and 'result="ignored"' not in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def agreed(caller: Caller, campaign_id: str) -> tuple[dict[str, int], dict[str, int]]:
    """Progress and stats once both settled and agree (stats follows the bus)."""
    last: list[dict[str, int]] = []

    async def probe() -> bool:
        cp = await caller.campaigns.GetCampaign(cpb.GetCampaignRequest(id=campaign_id))
        st = await caller.stats.GetCampaignStats(spb.GetCampaignStatsRequest(campaign_id=campaign_id))
        last[:] = [progress_of(cp), counters_of(st)]
        return cp.status in stack.TERMINAL and last[0] == last[1]

    try:
        await stack.wait_for(probe, "stats to agree with the campaign's progress")
    except AssertionError:
        pass  # the comparison below shows how they differ
    return last[0], last[1]


async def test_unknown_and_foreign_campaigns_are_not_found(
        contract_stack: ContractStack, contract_admin_a: Caller, contract_admin_b: Caller) -> None:
    [phone] = contract_stack.phones(1)
    cp = await contract_admin_a.campaigns.CreateCampaign(cpb.CreateCampaignRequest(
        request_id=f"stats-{time.time_ns()}", draft=True,
        campaign=stack.sms_campaign("stats lookup", "hello", SENDER),
        recipients=[c.Recipient(phone=phone)]))
    req = spb.GetCampaignStatsRequest(campaign_id=cp.id)
    # Exists, nothing sent yet: zeros for its own workspace.
    st = await contract_admin_a.stats.GetCampaignStats(req)
    assert st.campaign_id == cp.id and counters_of(st) == dict.fromkeys(SAME.values(), 0)
    # Another workspace's campaign, and one nobody created: NOT_FOUND.
    assert await code_of(contract_admin_b.stats.GetCampaignStats(req)) == grpc.StatusCode.NOT_FOUND
    nobody = spb.GetCampaignStatsRequest(campaign_id="00000000-0000-4000-8000-000000000000")
    assert await code_of(contract_admin_a.stats.GetCampaignStats(nobody)) == grpc.StatusCode.NOT_FOUND
    watch = contract_admin_b.stats.WatchCampaignStats(spb.WatchCampaignStatsRequest(campaign_id=cp.id))
    assert await code_of(watch.read()) == grpc.StatusCode.NOT_FOUND
    # Malformed: INVALID_ARGUMENT naming the field.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await contract_admin_a.stats.GetCampaignStats(spb.GetCampaignStatsRequest(campaign_id="cmp-1"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(err.value)) == ["campaign_id"]


async def test_sending_counts_the_hand_overs(contract_stack: ContractStack, contract_admin_a: Caller) -> None:
    before = await stats_events(contract_stack, "sending")
    phones = contract_stack.phones(3)
    cp = await stack.run_campaign(contract_admin_a, contract_admin_a, stack.sms_campaign(
        "stats sending", "hello", SENDER), [c.Recipient(phone=p) for p in phones])
    # Every message went through SENDING on its way: stats saw each hand-over (the gateway's
    # outcome may overtake it, then it is superseded, never counted back).
    assert await stats_events(contract_stack, "sending") - before >= 3
    progress, counters = await agreed(contract_admin_a, cp.id)
    assert counters == progress
    assert (counters["total"], counters["sent"], counters["sending"]) == (3, 3, 0)


async def publish(cs: ContractStack, events: list[e.MessageEvent]) -> None:
    nc = await bus.connect(cs.stack.procs["nats"].info["url"])
    try:
        await bus.publish_many(nc.jetstream(), [(states.message_subject(ev.kind), ev, ev.event_id)
                                                for ev in events])
    finally:
        await nc.close()


async def test_retry_after_build_failure_agrees_with_progress(
        contract_stack: ContractStack, contract_admin_a: Caller) -> None:
    # One contact of the category has no phone: its message fails at build (INVALID_ADDRESS),
    # published without an attempt, as the build publishes its events.
    cat = await stack.create_category(contract_admin_a, "stats-retry")
    [phone] = contract_stack.phones(1)
    stamp = time.time_ns()
    await stack.upsert_contacts(contract_admin_a, [
        rpb.Contact(phone=phone, first_name="Ada", external_id=f"stats-ada-{stamp}", category_ids=[cat]),
        rpb.Contact(email=f"grace.{stamp}@example.com", first_name="Grace",
                    external_id=f"stats-grace-{stamp}", category_ids=[cat])])
    cp = await stack.run_campaign(contract_admin_a, contract_admin_a, stack.sms_campaign(
        "stats retry", "hello", SENDER, category_ids=[cat]))
    progress, counters = await agreed(contract_admin_a, cp.id)
    assert counters == progress and (progress["total"], progress["failed"]) == (2, 1)
    [failed] = [m for m in await stack.all_messages(contract_admin_a, cp.id)
                if m.status == c.MESSAGE_STATUS_FAILED]
    # RetryMessages now leaves an address-less message alone; a retry of it (as before that
    # exclusion, or after the address is fixed) is these facts on the bus, as campaigns, the
    # dispatcher and the gateway publish them: QUEUED attempt 2, SENDING, SUBMITTED, DELIVERED.
    base = dict(message_id=failed.id, campaign_id=cp.id, workspace_id=stack.WS_A,
                channel=c.CHANNEL_SMS, attempt=2, occurred_at=now_ts())
    K = e.MessageEventKind
    await publish(contract_stack, [
        e.MessageEvent(event_id=f"{failed.id}:queued:2", kind=K.MESSAGE_EVENT_KIND_QUEUED,
                       status=c.MESSAGE_STATUS_QUEUED, **base),
        e.MessageEvent(event_id=f"{failed.id}:sending:2", kind=K.MESSAGE_EVENT_KIND_SENDING,
                       status=c.MESSAGE_STATUS_SENDING, **base),
        e.MessageEvent(event_id=f"{failed.id}:submitted:2", kind=K.MESSAGE_EVENT_KIND_SUBMITTED,
                       status=c.MESSAGE_STATUS_SUBMITTED, **base),
        e.MessageEvent(event_id=f"{failed.id}:dlr:2", kind=K.MESSAGE_EVENT_KIND_DELIVERED,
                       status=c.MESSAGE_STATUS_DELIVERED, **base)])

    async def ledger_moved() -> bool:
        got = await contract_admin_a.campaigns.GetCampaign(cpb.GetCampaignRequest(id=cp.id))
        return got.progress.delivered == 2

    await stack.wait_for(ledger_moved, "the ledger to apply the retry's events")
    progress, counters = await agreed(contract_admin_a, cp.id)
    assert counters == progress
    assert (counters["total"], counters["sent"], counters["delivered"], counters["failed"]) == (2, 2, 2, 0)
