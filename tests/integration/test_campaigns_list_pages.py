"""ListMessages pages over real gRPC on both backends: a walk gives every matching row once, in
order (ties in the sort value included); tokens are bound to their query; legacy offset tokens
still work; a status-only filter's total (read from the progress counters) equals the count."""

from __future__ import annotations

import base64
from datetime import timedelta

import grpc
import pytest
from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from sqlalchemy import insert

from services.campaigns.schema import messages
from tests.integration.campaigns_harness import Harness, sms

S = c.MessageStatus
WS = (("x-herald-workspace", "wx"),)
N = 23


async def seed(h: Harness, cid: str) -> list[dict]:
    """N rows: created_at shared by groups of three (ties), sent_at NULL for every fourth row
    and shared by pairs otherwise; statuses DELIVERED, FAILED, QUEUED in turn."""
    now = h.clock.now()
    statuses = (S.MESSAGE_STATUS_DELIVERED, S.MESSAGE_STATUS_FAILED, S.MESSAGE_STATUS_QUEUED)
    rows = []
    for i in range(N):
        # ids not in creation order, so ties are broken by id, not by insertion.
        rows.append(dict(
            id=f"{cid[:8]}-{(i * 7) % N:03d}", campaign_id=cid, workspace_id="wx",
            address=f"+4477009{i:05d}", channel=c.CHANNEL_SMS, status=statuses[i % 3], status_rank=5,
            fields={}, created_at=now + timedelta(seconds=i // 3),
            sent_at=None if i % 4 == 0 else now + timedelta(seconds=30 - i // 2)))
    async with h.engine.begin() as conn:
        await conn.execute(insert(messages), rows)
    return rows


async def walk(h: Harness, cid: str, flt: str, order: str, size: int) -> list[str]:
    ids, token, pages = [], "", 0
    while True:
        r = await h.stub.ListMessages(pb.ListMessagesRequest(
            campaign_id=cid, filter=flt, order_by=order, page_size=size, page_token=token), metadata=WS)
        ids += [m.id for m in r.messages]
        pages += 1
        token = r.next_page_token
        if not token:
            return ids
        assert pages <= N + 1


@pytest.mark.parametrize("flt", ["", "status=DELIVERED,QUEUED"])
@pytest.mark.parametrize("order", ["created", "created desc", "sent", "sent desc"])
async def test_a_walk_gives_every_row_once_in_order(h: Harness, flt: str, order: str) -> None:
    cp = await h.stub.CreateCampaign(sms(1), metadata=WS)
    rows = await seed(h, cp.id)
    # The whole list in one page: the database's own order (NULL sent_at placement per dialect).
    whole = await walk(h, cp.id, flt, order, 1000)
    wanted = [r for r in rows if not flt or r["status"] != S.MESSAGE_STATUS_FAILED]
    assert sorted(whole) == sorted(r["id"] for r in wanted)
    if order.startswith("created"):
        key = sorted(wanted, key=lambda r: (r["created_at"], r["id"]), reverse=order.endswith("desc"))
        assert whole == [r["id"] for r in key]
    for size in (1, 2, 4):
        assert await walk(h, cp.id, flt, order, size) == whole


async def test_legacy_offset_token_and_foreign_tokens(h: Harness) -> None:
    cp = await h.stub.CreateCampaign(sms(1), metadata=WS)
    await seed(h, cp.id)
    whole = await walk(h, cp.id, "", "created", 1000)
    legacy = base64.urlsafe_b64encode(b"o:4").decode()
    r = await h.stub.ListMessages(pb.ListMessagesRequest(campaign_id=cp.id, page_size=4, page_token=legacy),
                                  metadata=WS)
    assert [m.id for m in r.messages] == whole[4:8]
    rest = await walk_from(h, cp.id, r.next_page_token)
    assert whole[4:8] + rest == whole[4:]

    first = await h.stub.ListMessages(pb.ListMessagesRequest(campaign_id=cp.id, page_size=4), metadata=WS)
    sent = await h.stub.ListMessages(pb.ListMessagesRequest(campaign_id=cp.id, page_size=4, order_by="sent"),
                                     metadata=WS)
    other = await h.stub.CreateCampaign(sms(1), metadata=WS)
    for token, flt, order, cid in ((first.next_page_token, "status=DELIVERED", "", cp.id),
                                   (first.next_page_token, "", "created desc", cp.id),
                                   (first.next_page_token, "", "", other.id),
                                   (sent.next_page_token, "status=QUEUED", "sent", cp.id),
                                   ("bm90IGEgdG9rZW4", "", "", cp.id)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await h.stub.ListMessages(pb.ListMessagesRequest(
                campaign_id=cid, filter=flt, order_by=order, page_token=token), metadata=WS)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "page_token" in (err.value.details() or "")


async def walk_from(h: Harness, cid: str, token: str) -> list[str]:
    ids = []
    while token:
        r = await h.stub.ListMessages(pb.ListMessagesRequest(campaign_id=cid, page_size=4, page_token=token),
                                      metadata=WS)
        ids += [m.id for m in r.messages]
        token = r.next_page_token
    return ids


async def test_status_only_totals_equal_the_count(h: Harness) -> None:
    cp = await h.stub.CreateCampaign(sms(1), metadata=WS)
    rows = await seed(h, cp.id)
    cases = {"status=DELIVERED": {S.MESSAGE_STATUS_DELIVERED},
             "status=DELIVERED,FAILED": {S.MESSAGE_STATUS_DELIVERED, S.MESSAGE_STATUS_FAILED},
             "status=DELIVERED,FAILED AND status=FAILED": {S.MESSAGE_STATUS_FAILED},
             "status=DELIVERED AND status=FAILED": set(),
             "status=SENDING": set(),
             "status=QUEUED AND result=unknown": {S.MESSAGE_STATUS_QUEUED},
             "": {r["status"] for r in rows}}
    for flt, picked in cases.items():
        r = await h.stub.ListMessages(pb.ListMessagesRequest(campaign_id=cp.id, filter=flt, page_size=2),
                                      metadata=WS)
        assert r.total_size == sum(1 for x in rows if x["status"] in picked), flt
