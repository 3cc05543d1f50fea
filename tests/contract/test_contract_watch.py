"""WatchCampaignStats ends by itself, through the full stack (real campaigns, gateways, SMSC
simulator, stats consuming the bus):

- a watch opened before the campaign is approved sees it move (non-final snapshots), then
  receives one snapshot with final=true and campaign_status DONE and the stream ends OK; the
  final figures are GetCampaignStats's and the ledger's (they do not move any more);
- a watch on a campaign that is already final receives that one snapshot and ends, also
  after RebuildCampaignStats (the rebuild keeps the lifecycle status);
- campaign events that arrive late or out of order never move a terminal status back, and a
  DONE campaign reopens only by its retry transition (events published on the bus as
  CampaignService publishes them).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import grpc
from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from herald.v1 import stats_pb2 as spb

from shared import bus
from shared.timeutil import to_ts
from tests.contract import stack
from tests.contract.stack import Caller, ContractStack

SENDER = "HERALD"  # ws-a's SMS sender in the contract suite
WATCH_LIMIT = 60.0  # seconds a watch may take to end by itself
FIGURES = ("total", "processed", "sent", "delivered", "failed", "opted_out", "queued", "sending",
           "submitted", "assumed_delivered", "deferred", "cancelled")
PROGRESS = {"failed": "errors"}  # CampaignStats field -> Progress field where they differ


async def watch_to_the_end(caller: Caller, campaign_id: str, interval_ms: int = 100,
                           ) -> tuple[list[spb.CampaignStats], grpc.StatusCode]:
    """Every snapshot of one watch and how the stream ended (it must end by itself)."""
    call = caller.stats.WatchCampaignStats(spb.WatchCampaignStatsRequest(
        campaign_id=campaign_id, interval_ms=interval_ms))
    got: list[spb.CampaignStats] = []

    async def read() -> None:
        async for st in call:
            got.append(st)

    try:
        await asyncio.wait_for(read(), WATCH_LIMIT)
    except TimeoutError:
        call.cancel()
        raise AssertionError(f"the watch did not end within {WATCH_LIMIT}s; last: {got[-1:]}") from None
    return got, await call.code()


def figures(st: spb.CampaignStats) -> dict[str, int]:
    return {f: getattr(st, f) for f in FIGURES}


def progress(cp: cpb.Campaign) -> dict[str, int]:
    return {f: getattr(cp.progress, PROGRESS.get(f, f)) for f in FIGURES}


async def test_a_watch_follows_the_campaign_and_ends_when_it_is_final(
        contract_stack: ContractStack, contract_admin_a: Caller) -> None:
    phones = contract_stack.phones(3)
    campaign = stack.sms_campaign("watch to the end", "hello", SENDER, auto_start=True, max_rate=4)
    cp = await contract_admin_a.campaigns.CreateCampaign(cpb.CreateCampaignRequest(
        request_id=f"watch-{time.time_ns()}", campaign=campaign,
        recipients=[c.Recipient(phone=p) for p in phones]))
    watching = asyncio.create_task(watch_to_the_end(contract_admin_a, cp.id))
    await contract_admin_a.campaigns.ApproveCampaign(cpb.CampaignActionRequest(id=cp.id, note="watch"))
    snapshots, code = await watching

    assert code == grpc.StatusCode.OK
    *moving, last = snapshots
    assert moving, "no snapshot before the final one"
    assert not any(st.final for st in moving)
    assert last.final and last.campaign_status == cpb.CAMPAIGN_STATUS_DONE
    assert (last.total, last.processed, last.sent, last.delivered) == (3, 3, 3, 3)
    assert last.queued + last.sending + last.submitted + last.deferred == 0
    # The final figures are the service's answer, and where the ledger ends up.
    assert await contract_admin_a.stats.GetCampaignStats(
        spb.GetCampaignStatsRequest(campaign_id=cp.id)) == last

    async def ledger_agrees() -> bool:
        got = await contract_admin_a.campaigns.GetCampaign(cpb.GetCampaignRequest(id=cp.id))
        return progress(got) == figures(last)

    await stack.wait_for(ledger_agrees, "the ledger's progress to match the final stats")


async def test_a_watch_on_a_final_campaign_ends_after_one_snapshot(
        contract_stack: ContractStack, contract_admin_a: Caller) -> None:
    [phone] = contract_stack.phones(1)
    cp = await stack.run_campaign(contract_admin_a, contract_admin_a, stack.sms_campaign(
        "watch a final campaign", "hello", SENDER), [c.Recipient(phone=phone)])

    async def final() -> bool:
        st = await contract_admin_a.stats.GetCampaignStats(spb.GetCampaignStatsRequest(campaign_id=cp.id))
        return st.final

    await stack.wait_for(final, "the stats to be final")
    snapshots, code = await watch_to_the_end(contract_admin_a, cp.id)
    assert code == grpc.StatusCode.OK and len(snapshots) == 1
    [st] = snapshots
    assert st.final and st.campaign_status == cpb.CAMPAIGN_STATUS_DONE and st.delivered == 1

    # Rebuilt from the ledger: the same figures, still DONE and final.
    rebuilt = await contract_admin_a.stats.RebuildCampaignStats(
        spb.RebuildCampaignStatsRequest(campaign_id=cp.id))
    assert rebuilt.final and rebuilt.campaign_status == cpb.CAMPAIGN_STATUS_DONE
    assert figures(rebuilt) == figures(st)
    snapshots, code = await watch_to_the_end(contract_admin_a, cp.id)
    assert code == grpc.StatusCode.OK and [s.final for s in snapshots] == [True]


def status_event(campaign_id: str, status: str, previous: str, at: datetime) -> e.CampaignEvent:
    return e.CampaignEvent(
        event_id=str(uuid.uuid4()), kind=e.CAMPAIGN_EVENT_KIND_STATUS_CHANGED,
        campaign_id=campaign_id, workspace_id=stack.WS_A, status=status,
        previous_status=previous, occurred_at=to_ts(at), actor="scheduler")


async def test_late_campaign_events_never_move_a_final_status_back(
        contract_stack: ContractStack, contract_admin_a: Caller) -> None:
    [phone] = contract_stack.phones(1)
    done = await stack.run_campaign(contract_admin_a, contract_admin_a, stack.sms_campaign(
        "watch late events", "hello", SENDER), [c.Recipient(phone=phone)])
    # Campaigns stats knows only from the bus (as a producer publishes them).
    retried, cancelled, sentinel = (str(uuid.uuid4()) for _ in range(3))
    now = datetime.now(UTC)
    t = [now + timedelta(seconds=i) for i in range(6)]
    events = [
        # A redelivered early transition of the real campaign, and a SENDING stamped later
        # that is not the retry's (its previous status is not DONE): DONE stays.
        status_event(done.id, "SENDING", "BUILDING", t[0] - timedelta(minutes=5)),
        status_event(done.id, "SENDING", "PAUSED", t[1]),
        # DONE reopened by its retry (previous DONE, later), then a late DONE from before it.
        status_event(retried, "DONE", "SENDING", t[1]),
        status_event(retried, "SENDING", "DONE", t[3]),
        status_event(retried, "DONE", "SENDING", t[2]),
        # CANCELLED has no way out, whatever comes later.
        status_event(cancelled, "CANCELLED", "SENDING", t[1]),
        status_event(cancelled, "SENDING", "PAUSED", t[5]),
        # Applied once every event above was (the campaign events are handled in order).
        status_event(sentinel, "FAILED", "BUILDING", t[0]),
    ]
    nc = await bus.connect(contract_stack.stack.procs["nats"].info["url"])
    try:
        js = nc.jetstream()
        for ev in events:  # one by one: the bus keeps their order
            await bus.publish(js, "events.campaign.status_changed", ev, ev.event_id)
    finally:
        await nc.close()

    async def status_of(cid: str) -> int:
        st = await contract_admin_a.stats.GetCampaignStats(spb.GetCampaignStatsRequest(campaign_id=cid))
        return st.campaign_status

    async def applied() -> bool:
        try:
            return await status_of(sentinel) == cpb.CAMPAIGN_STATUS_FAILED
        except grpc.aio.AioRpcError as err:  # NOT_FOUND until stats saw its event
            assert err.code() == grpc.StatusCode.NOT_FOUND
            return False

    await stack.wait_for(applied, "stats to apply the campaign events")
    assert await status_of(retried) == cpb.CAMPAIGN_STATUS_SENDING
    assert await status_of(cancelled) == cpb.CAMPAIGN_STATUS_CANCELLED
    snapshots, code = await watch_to_the_end(contract_admin_a, done.id)
    assert code == grpc.StatusCode.OK and len(snapshots) == 1
    assert snapshots[0].final and snapshots[0].campaign_status == cpb.CAMPAIGN_STATUS_DONE
