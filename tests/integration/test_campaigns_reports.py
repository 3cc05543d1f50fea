"""Exports (queued -> running -> done -> expired), job errors, replies and click records,
on both backends over real gRPC."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import grpc
import pytest
from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from herald.v1 import recipients_pb2_grpc as rgrpc
from sqlalchemy import insert

from cli import procs
from services.campaigns.ledger import apply_batch
from services.campaigns.scheduler import Scheduler
from services.campaigns.schema import messages
from tests.integration.campaigns_harness import Harness, sms, tick

S = c.MessageStatus
WS = (("x-herald-workspace", "wx"),)


async def seed_messages(h: Harness, cid: str) -> list[str]:
    now = h.clock.now()
    rows = [("a", "+447700900201", S.MESSAGE_STATUS_DELIVERED, {"plan": "gold"}),
            ("b", "+447700900202", S.MESSAGE_STATUS_FAILED, {"plan": "silver", "city": "Leeds"}),
            ("c", "+447700900203", S.MESSAGE_STATUS_DELIVERED, {})]
    ids = []
    async with h.engine.begin() as conn:
        for suffix, phone, st, fields in rows:
            mid = f"{cid[:8]}-{suffix}"
            ids.append(mid)
            await conn.execute(insert(messages).values(
                id=mid, campaign_id=cid, workspace_id="wx", address=phone, contact_name=f"Ann {suffix}",
                channel=c.CHANNEL_SMS, status=st, status_rank=5, fields=fields, created_at=now,
                carrier_result="UNDELIV" if st == S.MESSAGE_STATUS_FAILED else "DELIVRD"))
    return ids


async def download(h: Harness, export_id: str) -> bytes:
    return b"".join([ch.data async for ch in h.stub.DownloadExport(pb.GetExportRequest(id=export_id),
                                                                   metadata=WS)])


async def test_export_lifecycle_and_content(h: Harness) -> None:
    cp = await h.stub.CreateCampaign(sms(1), metadata=WS)
    await seed_messages(h, cp.id)
    ex = await h.stub.CreateExport(pb.CreateExportRequest(campaign_id=cp.id, request_id="e-1"), metadata=WS)
    assert ex.status == pb.EXPORT_STATUS_QUEUED
    assert (await h.stub.CreateExport(pb.CreateExportRequest(campaign_id=cp.id, request_id="e-1"),
                                      metadata=WS)).id == ex.id
    with pytest.raises(grpc.aio.AioRpcError) as err:  # not built yet
        await download(h, ex.id)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await h.ticks(0.2)
    done = await h.stub.GetExport(pb.GetExportRequest(id=ex.id), metadata=WS)
    assert done.status == pb.EXPORT_STATUS_DONE and done.rows == 3 and done.size_bytes > 0
    rows = list(csv.DictReader(io.StringIO((await download(h, ex.id)).decode())))
    assert [r["recipient"] for r in rows] == ["+447700900201", "+447700900202", "+447700900203"]
    assert rows[1]["field:city"] == "Leeds" and rows[0]["field:plan"] == "gold"
    assert rows[1]["status"] == "FAILED" and rows[1]["carrier_result"] == "UNDELIV"
    failed_only = await h.stub.CreateExport(pb.CreateExportRequest(
        campaign_id=cp.id, filter="result=failed", format=pb.EXPORT_FORMAT_TXT), metadata=WS)
    await h.ticks(0.2)
    text = (await download(h, failed_only.id)).decode().splitlines()
    assert len(text) == 2 and "\t" in text[0] and "+447700900202" in text[1]
    listing = await h.stub.ListExports(pb.ListExportsRequest(campaign_id=cp.id), metadata=WS)
    assert {x.id for x in listing.exports} == {ex.id, failed_only.id}
    h.clock.advance(3601)
    await h.ticks(0.2)
    assert (await h.stub.GetExport(pb.GetExportRequest(id=ex.id), metadata=WS)).status == pb.EXPORT_STATUS_EXPIRED
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await download(h, ex.id)
    assert "expired" in err.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await h.stub.CreateExport(pb.CreateExportRequest(campaign_id=cp.id, filter="colour=red"), metadata=WS)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await h.stub.GetExport(pb.GetExportRequest(id=ex.id), metadata=(("x-herald-workspace", "other"),))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_replies_and_clicks_are_listed_once_each(h: Harness) -> None:
    cp = await h.stub.CreateCampaign(sms(1), metadata=WS)
    a, b, _ = await seed_messages(h, cp.id)
    at = h.clock.now()
    evs = [
        e.MessageEvent(event_id="r1", kind=e.MESSAGE_EVENT_KIND_REPLIED, message_id=a, campaign_id=cp.id,
                       reply_text="Yes please", reply_from="+447700900201"),
        e.MessageEvent(event_id="r1", kind=e.MESSAGE_EVENT_KIND_REPLIED, message_id=a, campaign_id=cp.id,
                       reply_text="Yes please", reply_from="+447700900201"),
        e.MessageEvent(event_id="k1", kind=e.MESSAGE_EVENT_KIND_CLICKED, message_id=a, campaign_id=cp.id,
                       link_index=0, url="https://shop.example.com/"),
        e.MessageEvent(event_id="k2", kind=e.MESSAGE_EVENT_KIND_CLICKED, message_id=a, campaign_id=cp.id,
                       link_index=1, url="https://help.example.com/"),
        e.MessageEvent(event_id="k3", kind=e.MESSAGE_EVENT_KIND_CLICKED, message_id=b, campaign_id=cp.id,
                       link_index=0, url="https://shop.example.com/"),
    ]
    for ev in evs:
        ev.occurred_at.FromDatetime(at)
    async with h.engine.begin() as conn:
        await apply_batch(conn, evs, at)
    reps = await h.stub.ListReplies(pb.ListRepliesRequest(campaign_id=cp.id), metadata=WS)
    assert [(r.contact_name, r.text) for r in reps.replies] == [("Ann a", "Yes please")]
    clk = await h.stub.ListClicks(pb.ListClicksRequest(campaign_id=cp.id), metadata=WS)
    assert (clk.total_size, clk.unique_contacts) == (3, 2)
    assert {(x.contact_name, x.url) for x in clk.clicks} == {
        ("Ann a", "https://shop.example.com/"), ("Ann a", "https://help.example.com/"),
        ("Ann b", "https://shop.example.com/")}


async def test_build_errors_appear_in_the_job_errors_tab(h: Harness) -> None:
    dead = grpc.aio.insecure_channel(f"127.0.0.1:{procs.free_port()}")
    broken = Scheduler(h.store, h.scheduler.js, rgrpc.RecipientServiceStub(dead), clock=h.clock)
    req = sms(2)
    req.campaign.auto_start = True
    cp = await h.stub.CreateCampaign(req, metadata=WS)
    await h.stub.ApproveCampaign(pb.CampaignActionRequest(id=cp.id), metadata=WS)
    for _ in range(3):
        h.clock.advance(0.2)
        await tick(broken)
    errs = await h.stub.ListJobErrors(pb.ListJobErrorsRequest(campaign_id=cp.id), metadata=WS)
    assert errs.total_size == 1  # the same error is not stored on every retry
    assert errs.errors[0].stage == "build" and "UNAVAILABLE" in errs.errors[0].message
    assert (await h.status(cp.id, WS)).status == pb.CAMPAIGN_STATUS_BUILDING
    await dead.close()
    h.clock.advance(timedelta(seconds=11).total_seconds())  # the broken replica's lease runs out
    await h.ticks(0.4)  # a healthy replica finishes the build
    assert (await h.status(cp.id, WS)).status == pb.CAMPAIGN_STATUS_SENDING
