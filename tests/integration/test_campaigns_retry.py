"""RetryMessages applies suppression and address validation again at retry time: a number
that opted out after its first attempt and an address refused at build are never resent
(reported in `excluded` with their reason), and a TRIGGER campaign (SENDING for as long as it
accepts triggers) never blocks retries of another campaign. Real SQL (both backends), a
private NATS, the real recipients service."""

from __future__ import annotations

import uuid

import grpc
import pytest
from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from herald.v1 import recipients_pb2 as rpb
from herald.v1 import recipients_pb2_grpc as rgrpc
from sqlalchemy import insert, select

from services.campaigns.ledger import apply_batch
from services.campaigns.schema import messages
from shared.timeutil import to_ts
from tests.integration.campaigns_harness import Harness, new_sender, sms

S = c.MessageStatus
K = e.MessageEventKind
# Suppressions live in the session's recipients process: one workspace per test run.
WS = f"w-retry-{uuid.uuid4().hex[:8]}"


def md() -> tuple:
    return (("x-herald-workspace", WS),)


@pytest.fixture(autouse=True)
def fresh_workspace() -> None:
    global WS
    WS = f"w-retry-{uuid.uuid4().hex[:8]}"


async def approve(h: Harness, req: pb.CreateCampaignRequest) -> str:
    req.campaign.auto_start = True
    cp = await h.stub.CreateCampaign(req, metadata=md())
    await h.stub.ApproveCampaign(pb.CampaignActionRequest(id=cp.id), metadata=md())
    return cp.id


async def ledger(h: Harness, cid: str) -> dict[str, dict]:
    async with h.engine.connect() as conn:
        rows = (await conn.execute(select(messages).where(messages.c.campaign_id == cid))).mappings().all()
    return {r["address"]: dict(r) for r in rows}


async def fail_all(h: Harness, cid: str) -> None:
    """Every dispatched message fails at the carrier (attempt 1: submitted, then UNDELIV)."""
    rows = await ledger(h, cid)
    evs = []
    for r in rows.values():
        if r["dispatched_at"] is None:
            continue
        base = dict(message_id=r["id"], campaign_id=cid, workspace_id=WS, attempt=1,
                    occurred_at=to_ts(h.clock.now()), route="smsc-a")
        evs.append(e.MessageEvent(kind=K.MESSAGE_EVENT_KIND_SUBMITTED, status=S.MESSAGE_STATUS_SUBMITTED,
                                  provider_message_id=f"p-{r['id'][:6]}", **base))
        evs.append(e.MessageEvent(kind=K.MESSAGE_EVENT_KIND_FAILED, status=S.MESSAGE_STATUS_FAILED,
                                  carrier_result="UNDELIV", error_code="001",
                                  failure_category=c.FAILURE_CATEGORY_CARRIER_REJECTED,
                                  error_description="carrier receipt stat:UNDELIV err:001", **base))
    async with h.engine.begin() as conn:
        await apply_batch(conn, evs, h.clock.now())


async def test_retry_skips_opted_out_and_invalid_addresses(h: Harness) -> None:
    req = sms(3)
    phones = [r.phone for r in req.recipients]
    cid = await approve(h, req)
    await h.ticks(1)
    # An address the recipients service refused at build (stored before create checked
    # inline addresses): FAILED, never dispatched.
    async with h.engine.begin() as conn:
        await conn.execute(insert(messages).values(
            id=f"{cid[:8]}-bad", campaign_id=cid, workspace_id=WS, address="+4412", channel=c.CHANNEL_SMS,
            status=S.MESSAGE_STATUS_FAILED, status_rank=5, failure_category=c.FAILURE_CATEGORY_INVALID_ADDRESS,
            error_description="The phone number +4412 is incorrect", fields={}, created_at=h.clock.now()))
    await fail_all(h, cid)
    await h.ticks(1)
    assert (await h.status(cid, md())).status == pb.CAMPAIGN_STATUS_DONE
    # The second number replies STOP after its first attempt: it is suppressed now.
    recipients = rgrpc.RecipientServiceStub(h.channels[1])
    await recipients.AddSuppression(rpb.AddSuppressionRequest(
        channel=c.CHANNEL_SMS, address=phones[1], reason="keyword STOP"), metadata=md())

    resp = await h.stub.RetryMessages(pb.RetryMessagesRequest(campaign_id=cid, request_id="r-1"),
                                      metadata=md())
    assert resp.retried == 2 and resp.skipped == 2
    rows = await ledger(h, cid)
    excluded = {x.message_id: x for x in resp.excluded}
    stop, bad = excluded[rows[phones[1]]["id"]], excluded[rows["+4412"]["id"]]
    assert stop.category == c.FAILURE_CATEGORY_UNSUBSCRIBED and phones[1] in stop.reason
    assert bad.category == c.FAILURE_CATEGORY_INVALID_ADDRESS and "incorrect" in bad.reason
    assert len(excluded) == 2
    # Replayed: the same answer.
    again = await h.stub.RetryMessages(pb.RetryMessagesRequest(campaign_id=cid, request_id="r-1"),
                                       metadata=md())
    assert again == resp

    await h.ticks(1)
    rows = await ledger(h, cid)
    for p in (phones[0], phones[2]):
        assert rows[p]["attempt"] == 2 and rows[p]["status"] == S.MESSAGE_STATUS_SENDING
        assert rows[p]["sent_at"] is None and rows[p]["route"] == ""
    for p in (phones[1], "+4412"):  # never resent
        assert rows[p]["attempt"] == 1 and rows[p]["status"] == S.MESSAGE_STATUS_FAILED
    assert rows["+4412"]["dispatched_at"] is None
    # A second retry of the invalid address alone: still excluded, nothing retried.
    only = await h.stub.RetryMessages(pb.RetryMessagesRequest(
        campaign_id=cid, message_ids=[rows["+4412"]["id"]]), metadata=md())
    assert only.retried == 0 and [x.category for x in only.excluded] == [c.FAILURE_CATEGORY_INVALID_ADDRESS]


async def test_trigger_campaign_never_blocks_retries(h: Harness) -> None:
    trig = await approve(h, pb.CreateCampaignRequest(campaign=pb.Campaign(
        name="otp", channel=c.CHANNEL_SMS, sender=new_sender(), mode=pb.CAMPAIGN_MODE_TRIGGER,
        content=pb.Content(text="Your code"))))
    cid = await approve(h, sms(2))
    await h.ticks(1)
    await fail_all(h, cid)
    await h.ticks(1)
    assert (await h.status(trig, md())).status == pb.CAMPAIGN_STATUS_SENDING
    assert (await h.status(cid, md())).status == pb.CAMPAIGN_STATUS_DONE
    resp = await h.stub.RetryMessages(pb.RetryMessagesRequest(campaign_id=cid), metadata=md())
    assert resp.retried == 2 and resp.campaign.status == pb.CAMPAIGN_STATUS_SENDING
    # Another non-TRIGGER campaign of the channel that is sending still blocks.
    other = await approve(h, sms(3))
    await h.ticks(0.4)
    assert (await h.status(other, md())).status == pb.CAMPAIGN_STATUS_SENDING
    await fail_all(h, other)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await h.stub.RetryMessages(pb.RetryMessagesRequest(campaign_id=other), metadata=md())
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
