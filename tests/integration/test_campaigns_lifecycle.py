"""CampaignService over a real gRPC channel, on SQLite and PostgreSQL, with the real
recipients service checking targets and senders."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from herald.v1 import campaigns_pb2 as pb
from herald.v1 import campaigns_pb2_grpc as pb_grpc
from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2_grpc as rgrpc

from services.campaigns.servicer import CampaignServicer
from services.campaigns.store import Store
from shared import db
from shared.errors import field_violations
from shared.grpc_server import ServiceRuntime
from tests.integration.campaigns_harness import new_sender

MIGRATIONS = os.path.join(os.path.dirname(__file__), "../../services/campaigns/migrations")


@pytest.fixture(params=["sqlite", "postgresql"], scope="module")
async def stub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               campaign_servers: tuple[str, str]) -> AsyncIterator[pb_grpc.CampaignServiceStub]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('cdb') / 'c.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    await db.migrate(MIGRATIONS, url)
    engine = db.make_engine(url)
    rch = grpc.aio.insecure_channel(campaign_servers[1])
    servicer = CampaignServicer(Store(engine), recipients=rgrpc.RecipientServiceStub(rch))
    rt = ServiceRuntime("campaigns-test")
    port = await rt.start_grpc([(pb_grpc.add_CampaignServiceServicer_to_server, servicer,
                                 "herald.v1.CampaignService")])
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield pb_grpc.CampaignServiceStub(channel)
    await channel.close()
    await rch.close()
    await rt.shutdown(0)
    await engine.dispose()


def ws(name: str) -> tuple:
    return (("x-herald-workspace", name),)


def sms_request(**kw: object) -> pb.CreateCampaignRequest:
    return pb.CreateCampaignRequest(
        campaign=pb.Campaign(name="promo", channel=c.CHANNEL_SMS, sender=new_sender(),
                             content=pb.Content(text="Hello {{ first_name }}")),
        recipients=[c.Recipient(phone=f"+4477009000{i:02d}") for i in range(3)], **kw)


async def test_create_then_moderate_then_start(stub: pb_grpc.CampaignServiceStub) -> None:
    md = ws("ws-life")
    cp = await stub.CreateCampaign(sms_request(), metadata=md)
    assert cp.status == pb.CAMPAIGN_STATUS_NEW and cp.moderation == pb.MODERATION_STATE_PENDING
    assert cp.recipients_count == 3 and cp.author == "dev"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.StartCampaign(pb.CampaignActionRequest(id=cp.id), metadata=md)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    approved = await stub.ApproveCampaign(pb.CampaignActionRequest(id=cp.id, note="ok"), metadata=md)
    assert approved.status == pb.CAMPAIGN_STATUS_NEW  # no auto-start: waits for Start
    assert approved.moderation == pb.MODERATION_STATE_APPROVED
    started = await stub.StartCampaign(pb.CampaignActionRequest(id=cp.id), metadata=md)
    assert started.status == pb.CAMPAIGN_STATUS_PENDING
    assert [h.status for h in started.history] == [
        pb.CAMPAIGN_STATUS_NEW, pb.CAMPAIGN_STATUS_NEW, pb.CAMPAIGN_STATUS_PENDING]


async def test_auto_start_on_approve_and_illegal_transition(stub: pb_grpc.CampaignServiceStub) -> None:
    md = ws("ws-auto")
    req = sms_request()
    req.campaign.auto_start = True
    cp = await stub.CreateCampaign(req, metadata=md)
    cp = await stub.ApproveCampaign(pb.CampaignActionRequest(id=cp.id), metadata=md)
    assert cp.status == pb.CAMPAIGN_STATUS_PENDING
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ResumeCampaign(pb.CampaignActionRequest(id=cp.id), metadata=md)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "PENDING" in err.value.details() and "allowed" in err.value.details()


async def test_reject_cancels_with_note(stub: pb_grpc.CampaignServiceStub) -> None:
    md = ws("ws-reject")
    cp = await stub.CreateCampaign(sms_request(), metadata=md)
    cp = await stub.RejectCampaign(pb.CampaignActionRequest(id=cp.id, note="bad wording"), metadata=md)
    assert cp.status == pb.CAMPAIGN_STATUS_CANCELLED
    assert cp.moderation == pb.MODERATION_STATE_REJECTED and cp.moderation_note == "bad wording"
    assert cp.HasField("completed_at")


async def test_invalid_create_names_every_field(stub: pb_grpc.CampaignServiceStub) -> None:
    req = pb.CreateCampaignRequest(campaign=pb.Campaign(channel=c.CHANNEL_EMAIL,
                                                        mode=pb.CAMPAIGN_MODE_ON_TIME))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateCampaign(req, metadata=ws("ws-bad"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = field_violations(err.value)
    assert {"campaign.sender", "campaign.content.subject", "campaign.content.html",
            "campaign.start_at", "recipients"} <= set(fields)
    listing = await stub.ListCampaigns(pb.ListCampaignsRequest(show_all=True), metadata=ws("ws-bad"))
    assert listing.total_size == 0  # nothing half-created


async def test_request_id_replay_creates_once(stub: pb_grpc.CampaignServiceStub) -> None:
    md = ws("ws-replay")
    req = sms_request(request_id="r-1")
    first = await stub.CreateCampaign(req, metadata=md)
    again = await stub.CreateCampaign(req, metadata=md)
    assert again.id == first.id
    listing = await stub.ListCampaigns(pb.ListCampaignsRequest(show_all=True), metadata=md)
    assert [x.id for x in listing.campaigns] == [first.id]


async def test_workspace_isolation(stub: pb_grpc.CampaignServiceStub) -> None:
    cp = await stub.CreateCampaign(sms_request(), metadata=ws("ws-a"))
    for call in (stub.GetCampaign(pb.GetCampaignRequest(id=cp.id), metadata=ws("ws-b")),
                 stub.ApproveCampaign(pb.CampaignActionRequest(id=cp.id), metadata=ws("ws-b")),
                 stub.ListMessages(pb.ListMessagesRequest(campaign_id=cp.id), metadata=ws("ws-b"))):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    other = await stub.ListCampaigns(pb.ListCampaignsRequest(show_all=True), metadata=ws("ws-b"))
    assert cp.id not in [x.id for x in other.campaigns]


async def test_list_filters_order_and_pages(stub: pb_grpc.CampaignServiceStub) -> None:
    md = ws("ws-list")
    ids = [(await stub.CreateCampaign(sms_request(), metadata=md)).id for _ in range(5)]
    await stub.RejectCampaign(pb.CampaignActionRequest(id=ids[0]), metadata=md)
    page1 = await stub.ListCampaigns(pb.ListCampaignsRequest(page_size=2, order_by="created asc",
                                                             show_all=True), metadata=md)
    page2 = await stub.ListCampaigns(pb.ListCampaignsRequest(page_size=2, order_by="created asc",
                                                             show_all=True,
                                                             page_token=page1.next_page_token), metadata=md)
    assert [x.id for x in page1.campaigns] + [x.id for x in page2.campaigns] == ids[:4]
    assert page1.total_size == 5
    new_only = await stub.ListCampaigns(pb.ListCampaignsRequest(filter="status=NEW"), metadata=md)
    assert sorted(x.id for x in new_only.campaigns) == sorted(ids[1:])
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListCampaigns(pb.ListCampaignsRequest(filter="colour=red"), metadata=md)
    assert "filter" in field_violations(err.value)


def test_migrations_dir_exists() -> None:
    assert (Path(MIGRATIONS) / "env.py").exists()
