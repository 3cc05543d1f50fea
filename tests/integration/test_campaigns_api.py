"""CampaignService API over real gRPC on SQLite and PostgreSQL: every transition, request_id
replay of every mutating RPC, workspace isolation of every RPC, masking, audit, archive,
delete, edit, KPIs and the list/message filters of the seed pages."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from herald.v1 import campaigns_pb2 as pb
from herald.v1 import campaigns_pb2_grpc as pb_grpc
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from sqlalchemy import insert, select, update

from services.campaigns import lifecycle
from services.campaigns.ledger import apply_batch
from services.campaigns.schema import campaigns, messages
from services.campaigns.servicer import CampaignServicer
from services.campaigns.store import Store
from shared.errors import HeraldError, field_violations
from shared.grpc_server import ServiceRuntime
from tests.integration.campaigns_harness import Harness, new_sender, sms

S = c.MessageStatus
ALL = list(lifecycle.TRANSITIONS)


def md(ws: str) -> tuple:
    return (("x-herald-workspace", ws),)


async def force(h: Harness, cid: str, status: str, **values: object) -> None:
    async with h.engine.begin() as conn:
        await conn.execute(update(campaigns).where(campaigns.c.id == cid).values(status=status, **values))


async def test_every_legal_and_illegal_transition(h: Harness) -> None:
    cp = await h.stub.CreateCampaign(sms(1), metadata=md("w"))
    for current, target in itertools.product(ALL, ALL):
        await force(h, cp.id, current)
        async with h.engine.begin() as conn:
            row = await h.store.get_row(conn, cp.id, None)
            if target in lifecycle.TRANSITIONS[current]:
                await Store.set_status(conn, row, target, "t", "test", h.clock.now())
                assert (await h.store.get_row(conn, cp.id, None))["status"] == target
            else:
                with pytest.raises(HeraldError) as err:
                    await Store.set_status(conn, row, target, "t", "test", h.clock.now())
                assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
                assert current in err.value.message and "allowed" in err.value.message


# RPC -> states it is legal from (everything else must be FAILED_PRECONDITION).
RPC_LEGAL = {
    "SubmitCampaign": {"DRAFT"},
    "ApproveCampaign": {"NEW"},
    "RejectCampaign": {"NEW"},
    "StartCampaign": {"NEW"},
    "PauseCampaign": {"SENDING"},
    "ResumeCampaign": {"PAUSED"},
    "CancelCampaign": {"DRAFT", "NEW", "PENDING", "BUILDING", "SENDING", "PAUSED"},
    "ArchiveCampaign": {"NEW", "DONE", "CANCELLED", "FAILED", "EXPIRED"},
    "DeleteCampaign": {"DRAFT", "NEW", "DONE", "CANCELLED", "FAILED", "EXPIRED"},
}


async def test_operator_actions_from_every_state(h: Harness) -> None:
    for rpc, legal in RPC_LEGAL.items():
        for state in ALL:
            cp = await h.stub.CreateCampaign(sms(1), metadata=md("w"))
            # Start needs an approved campaign; Approve/Reject one awaiting moderation.
            moderation = (pb.MODERATION_STATE_APPROVED if rpc == "StartCampaign"
                          else pb.MODERATION_STATE_PENDING)
            await force(h, cp.id, state, moderation=moderation)
            call = getattr(h.stub, rpc)(pb.CampaignActionRequest(id=cp.id), metadata=md("w"))
            if state in legal:
                await call
            else:
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await call
                    pytest.fail(f"{rpc} from {state} should be refused")
                assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION, (rpc, state)
                assert state in err.value.details(), (rpc, state)


async def test_request_id_replay_changes_nothing_for_every_mutating_rpc(h: Harness) -> None:
    ws = md("w")
    create = sms(2, request_id="c-1")
    first = await h.stub.CreateCampaign(create, metadata=ws)
    assert (await h.stub.CreateCampaign(create, metadata=ws)).id == first.id
    cid = first.id
    upd = pb.UpdateCampaignRequest(request_id="u-1", campaign=pb.Campaign(id=cid, name="v1"),
                                   update_mask=FieldMask(paths=["name"]))
    assert (await h.stub.UpdateCampaign(upd, metadata=ws)).name == "v1"
    await h.stub.UpdateCampaign(pb.UpdateCampaignRequest(campaign=pb.Campaign(id=cid, name="v2"),
                                                         update_mask=FieldMask(paths=["name"])), metadata=ws)
    assert (await h.stub.UpdateCampaign(upd, metadata=ws)).name == "v1"  # the first answer...
    assert (await h.status(cid, ws)).name == "v2"                        # ...and no second change
    approve = pb.CampaignActionRequest(id=cid, request_id="a-1")
    await h.stub.ApproveCampaign(approve, metadata=ws)
    assert (await h.stub.ApproveCampaign(approve, metadata=ws)).moderation == pb.MODERATION_STATE_APPROVED
    start = pb.CampaignActionRequest(id=cid, request_id="s-1")
    assert (await h.stub.StartCampaign(start, metadata=ws)).status == pb.CAMPAIGN_STATUS_PENDING
    assert (await h.stub.StartCampaign(start, metadata=ws)).status == pb.CAMPAIGN_STATUS_PENDING
    await h.ticks(0.4)
    pause = pb.CampaignActionRequest(id=cid, request_id="p-1")
    assert (await h.stub.PauseCampaign(pause, metadata=ws)).status == pb.CAMPAIGN_STATUS_PAUSED
    await h.stub.ResumeCampaign(pb.CampaignActionRequest(id=cid, request_id="r-1"), metadata=ws)
    replay = await h.stub.PauseCampaign(pause, metadata=ws)
    assert replay.status == pb.CAMPAIGN_STATUS_PAUSED                        # first answer
    assert (await h.status(cid, ws)).status == pb.CAMPAIGN_STATUS_SENDING    # not paused again
    cancel = pb.CampaignActionRequest(id=cid, request_id="x-1")
    await h.stub.CancelCampaign(cancel, metadata=ws)
    await h.stub.CancelCampaign(cancel, metadata=ws)
    archive = pb.CampaignActionRequest(id=cid, request_id="ar-1")
    await h.stub.ArchiveCampaign(archive, metadata=ws)
    await h.stub.ArchiveCampaign(archive, metadata=ws)
    restore = pb.CampaignActionRequest(id=cid, request_id="re-1")
    await h.stub.RestoreCampaign(restore, metadata=ws)
    await h.stub.RestoreCampaign(restore, metadata=ws)
    other = await h.stub.CreateCampaign(sms(1), metadata=ws)
    for rpc, rid in (("SubmitCampaign", "sub-1"), ("RejectCampaign", "rej-1")):
        target = other.id
        if rpc == "SubmitCampaign":
            target = (await h.stub.CreateCampaign(sms(1, draft=True), metadata=ws)).id
        req = pb.CampaignActionRequest(id=target, request_id=rid)
        one = await getattr(h.stub, rpc)(req, metadata=ws)
        two = await getattr(h.stub, rpc)(req, metadata=ws)
        assert one == two
    delete = pb.CampaignActionRequest(id=cid, request_id="d-1")
    assert (await h.stub.DeleteCampaign(delete, metadata=ws)).id == cid
    assert (await h.stub.DeleteCampaign(delete, metadata=ws)).id == cid
    audit = await h.stub.ListAuditEvents(pb.ListAuditEventsRequest(campaign_id=cid), metadata=ws)
    actions = [a.action for a in audit.events]
    assert actions == ["created", "edited", "edited", "approved", "started", "paused", "resumed",
                       "cancelled", "archived", "restored", "deleted"]


async def test_every_rpc_is_scoped_to_the_callers_workspace(h: Harness) -> None:
    mine = await h.stub.CreateCampaign(sms(1), metadata=md("ws-a"))
    theirs = md("ws-b")
    calls = {
        "GetCampaign": pb.GetCampaignRequest(id=mine.id),
        "ListMessages": pb.ListMessagesRequest(campaign_id=mine.id),
        "ListAuditEvents": pb.ListAuditEventsRequest(campaign_id=mine.id),
        "UpdateCampaign": pb.UpdateCampaignRequest(campaign=pb.Campaign(id=mine.id, name="x"),
                                                   update_mask=FieldMask(paths=["name"])),
        "TriggerCampaign": pb.TriggerCampaignRequest(campaign_id=mine.id,
                                                     recipient=c.Recipient(phone="+447700900001")),
        **{rpc: pb.CampaignActionRequest(id=mine.id) for rpc in RPC_LEGAL},
        "RestoreCampaign": pb.CampaignActionRequest(id=mine.id),
        "RetryMessages": pb.RetryMessagesRequest(campaign_id=mine.id),
        "PromoteVariant": pb.PromoteVariantRequest(campaign_id=mine.id, variant="A"),
        "ReconcileCampaign": pb.ReconcileCampaignRequest(campaign_id=mine.id),
        "CreateExport": pb.CreateExportRequest(campaign_id=mine.id),
        "ListExports": pb.ListExportsRequest(campaign_id=mine.id),
        "ListJobErrors": pb.ListJobErrorsRequest(campaign_id=mine.id),
        "ListReplies": pb.ListRepliesRequest(campaign_id=mine.id),
        "ListClicks": pb.ListClicksRequest(campaign_id=mine.id),
        "PreviewContent": pb.PreviewContentRequest(campaign_id=mine.id),
    }
    mine_export = await h.stub.CreateExport(pb.CreateExportRequest(campaign_id=mine.id), metadata=md("ws-a"))
    calls["GetExport"] = pb.GetExportRequest(id=mine_export.id)
    for rpc, req in calls.items():
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await getattr(h.stub, rpc)(req, metadata=theirs)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND, rpc
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in h.stub.DownloadExport(pb.GetExportRequest(id=mine_export.id), metadata=theirs):
            pass
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    served = {m.name for m in pb.DESCRIPTOR.services_by_name["CampaignService"].methods}
    covered = set(calls) | {"DownloadExport", "ListCampaigns", "GetCampaignKpis", "CreateCampaign"}
    assert served <= covered, served - covered  # a new RPC must be added to this test
    listing = await h.stub.ListCampaigns(pb.ListCampaignsRequest(), metadata=theirs)
    assert listing.total_size == 0
    kpis = await h.stub.GetCampaignKpis(pb.GetCampaignKpisRequest(), metadata=theirs)
    assert kpis.total_campaigns == 0
    assert (await h.status(mine.id, md("ws-a"))).name == "t"  # untouched


async def test_edit_after_approval_goes_back_to_moderation_with_before_after(h: Harness) -> None:
    req = sms(1)
    req.campaign.auto_start = True
    cp = await h.stub.CreateCampaign(req, metadata=md("w"))
    await h.stub.ApproveCampaign(pb.CampaignActionRequest(id=cp.id), metadata=md("w"))
    edited = await h.stub.UpdateCampaign(pb.UpdateCampaignRequest(
        campaign=pb.Campaign(id=cp.id, content=pb.Content(text="new words")),
        update_mask=FieldMask(paths=["content"])), metadata=md("w"))
    assert edited.status == pb.CAMPAIGN_STATUS_NEW and edited.moderation == pb.MODERATION_STATE_PENDING
    audit = await h.stub.ListAuditEvents(pb.ListAuditEventsRequest(campaign_id=cp.id), metadata=md("w"))
    ev = audit.events[-1]
    assert ev.action == "edited" and "moderation" in ev.note
    assert json.loads(ev.before["content_text"]) == "hello"
    assert json.loads(ev.after["content_text"]) == "new words"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await h.stub.UpdateCampaign(pb.UpdateCampaignRequest(
            campaign=pb.Campaign(id=cp.id, author="me"), update_mask=FieldMask(paths=["author"])),
            metadata=md("w"))
    assert "update_mask" in field_violations(err.value)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await h.stub.UpdateCampaign(pb.UpdateCampaignRequest(
            campaign=pb.Campaign(id=cp.id, window=pb.SendingWindow(start="9", end="20:00",
                                                                   time_zone="Nowhere/City")),
            update_mask=FieldMask(paths=["window"])), metadata=md("w"))
    assert {"campaign.window.start", "campaign.window.time_zone"} <= set(field_violations(err.value))


async def test_archive_hides_restore_shows_and_delete_refuses_while_sending(h: Harness) -> None:
    a = await h.stub.CreateCampaign(sms(1), metadata=md("w"))
    await h.stub.ArchiveCampaign(pb.CampaignActionRequest(id=a.id), metadata=md("w"))
    visible = await h.stub.ListCampaigns(pb.ListCampaignsRequest(), metadata=md("w"))
    assert a.id not in [x.id for x in visible.campaigns]
    archive = await h.stub.ListCampaigns(pb.ListCampaignsRequest(archived_only=True), metadata=md("w"))
    assert [x.id for x in archive.campaigns] == [a.id]
    await h.stub.RestoreCampaign(pb.CampaignActionRequest(id=a.id), metadata=md("w"))
    visible = await h.stub.ListCampaigns(pb.ListCampaignsRequest(show_all=True), metadata=md("w"))
    assert a.id in [x.id for x in visible.campaigns]
    await force(h, a.id, "SENDING")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await h.stub.DeleteCampaign(pb.CampaignActionRequest(id=a.id), metadata=md("w"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "SENDING" in err.value.details()


async def test_seed_003_list_page_as_one_call(h: Harness) -> None:
    ws = md("w3")
    made = {}
    for sender, status, mode in (("ACME", "SENDING", pb.CAMPAIGN_MODE_ON_DEMAND),
                                 ("ACME", "PAUSED", pb.CAMPAIGN_MODE_ON_TIME),
                                 ("Globex", "SENDING", pb.CAMPAIGN_MODE_ON_DEMAND),
                                 ("Acme Shop", "DONE", pb.CAMPAIGN_MODE_ON_DEMAND)):
        req = sms(1, sender=sender)
        req.campaign.mode = mode
        if mode == pb.CAMPAIGN_MODE_ON_TIME:
            req.campaign.start_at.FromDatetime(h.clock.now() + timedelta(hours=1))
        cp = await h.stub.CreateCampaign(req, metadata=ws)
        await force(h, cp.id, status)
        made[(sender, status)] = cp.id
    old = await h.stub.CreateCampaign(sms(1, sender="ACME"), metadata=ws)
    async with h.engine.begin() as conn:
        await conn.execute(update(campaigns).where(campaigns.c.id == old.id).values(
            status="SENDING", created_at=h.clock.now() - timedelta(days=3)))
    # Last 24 h, statuses Sending+Paused, search "acme", sorted by sender then newest first.
    resp = await h.stub.ListCampaigns(pb.ListCampaignsRequest(
        filter='period=24h status=SENDING,PAUSED search=acme', order_by="sender asc"), metadata=ws)
    assert sorted(x.id for x in resp.campaigns) == sorted([made[("ACME", "SENDING")],
                                                           made[("ACME", "PAUSED")]])
    by_id = await h.stub.ListCampaigns(pb.ListCampaignsRequest(
        filter=f"search={made[('Globex', 'SENDING')][:8]}"), metadata=ws)
    assert [x.id for x in by_id.campaigns] == [made[("Globex", "SENDING")]]
    quoted = await h.stub.ListCampaigns(pb.ListCampaignsRequest(filter='search="acme shop"'), metadata=ws)
    assert [x.id for x in quoted.campaigns] == [made[("Acme Shop", "DONE")]]
    on_time = await h.stub.ListCampaigns(pb.ListCampaignsRequest(filter="mode=ON_TIME"), metadata=ws)
    assert [x.id for x in on_time.campaigns] == [made[("ACME", "PAUSED")]]
    kpis = await h.stub.GetCampaignKpis(pb.GetCampaignKpisRequest(), metadata=ws)
    assert (kpis.total_campaigns, kpis.active, kpis.completed, kpis.errors) == (5, 4, 1, 0)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await h.stub.ListCampaigns(pb.ListCampaignsRequest(filter="period=2y"), metadata=ws)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_message_filters_and_detail(h: Harness) -> None:
    ws = md("w4")
    cp = await h.stub.CreateCampaign(sms(1), metadata=ws)
    now = h.clock.now()
    rows = [("m1", "+447700900101", S.MESSAGE_STATUS_DELIVERED, "DELIVRD", 0),
            ("m2", "+447700900102", S.MESSAGE_STATUS_FAILED, "UNDELIV", c.FAILURE_CATEGORY_CARRIER_REJECTED),
            ("m3", "+447700900103", S.MESSAGE_STATUS_SUBMITTED, "", 0),
            ("m4", "+447700900104", S.MESSAGE_STATUS_FAILED, "", c.FAILURE_CATEGORY_INVALID_ADDRESS)]
    async with h.engine.begin() as conn:
        for mid, phone, st, carrier, cat in rows:
            await conn.execute(insert(messages).values(
                id=f"{cp.id[:8]}-{mid}", campaign_id=cp.id, workspace_id="w4", address=phone,
                contact_name=f"Ann {mid}", channel=c.CHANNEL_SMS, status=st, status_rank=3,
                carrier_result=carrier, failure_category=cat, fields={}, created_at=now,
                sent_at=now, dispatched_at=now, updated_at=now))

    async def ids(flt: str) -> list[str]:
        r = await h.stub.ListMessages(pb.ListMessagesRequest(campaign_id=cp.id, filter=flt), metadata=ws)
        return sorted(m.id.rsplit("-", 1)[1] for m in r.messages)

    assert await ids("result=failed") == ["m2", "m4"]
    assert await ids("carrier=UNDELIV") == ["m2"]
    assert await ids("carrier=null") == ["m3", "m4"]
    assert await ids("category=INVALID_ADDRESS") == ["m4"]
    assert await ids("result=unknown") == ["m3"]
    assert await ids("search=900103") == ["m3"]
    assert await ids("status=DELIVERED,SUBMITTED") == ["m1", "m3"]
    full = await h.stub.GetCampaign(pb.GetCampaignRequest(id=cp.id), metadata=ws)
    assert [(d.sent, d.delivered, d.failed) for d in full.daily] == [(4, 1, 2)]


async def test_masking_follows_the_pii_permission(h: Harness, tmp_path: Path) -> None:
    cp = await h.stub.CreateCampaign(sms(1), metadata=md("wm"))
    async with h.engine.begin() as conn:
        await conn.execute(insert(messages).values(
            id=f"{cp.id[:8]}-mask", campaign_id=cp.id, workspace_id="wm", address="+447700900987",
            channel=c.CHANNEL_SMS, status=S.MESSAGE_STATUS_QUEUED, status_rank=0, fields={},
            created_at=h.clock.now()))
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({
        "viewer-token": {"workspace": "wm", "roles": ["viewer"], "name": "vera"},
        "pii-token": {"workspace": "wm", "roles": ["viewer"], "pii": True, "name": "paul"},
        "master-token": {"workspace": "ops", "roles": ["master"], "name": "mia"},
    }))
    import os

    os.environ["HERALD_TOKENS_FILE"] = str(tokens)
    try:
        rt = ServiceRuntime("campaigns-auth")
        port = await rt.start_grpc([(pb_grpc.add_CampaignServiceServicer_to_server,
                                     CampaignServicer(h.store, clock=h.clock), "herald.v1.CampaignService")])
    finally:
        del os.environ["HERALD_TOKENS_FILE"]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = pb_grpc.CampaignServiceStub(ch)

        async def phone(token: str) -> str:
            r = await stub.ListMessages(pb.ListMessagesRequest(campaign_id=cp.id),
                                        metadata=(("authorization", f"Bearer {token}"),))
            return r.messages[0].phone

        assert await phone("viewer-token") == "**********987"
        assert await phone("pii-token") == "+447700900987"
        await h.stub.CancelCampaign(pb.CampaignActionRequest(id=cp.id, note="asked by +447700900555"),
                                    metadata=md("wm"))

        async def audit_note(token: str) -> tuple[str, str]:
            r = await stub.ListAuditEvents(pb.ListAuditEventsRequest(campaign_id=cp.id),
                                           metadata=(("authorization", f"Bearer {token}"),))
            got = await stub.GetCampaign(pb.GetCampaignRequest(id=cp.id),
                                         metadata=(("authorization", f"Bearer {token}"),))
            return r.events[-1].note, got.status_reason

        assert await audit_note("viewer-token") == ("asked by **********555",) * 2
        assert await audit_note("pii-token") == ("asked by +447700900555",) * 2
        with pytest.raises(grpc.aio.AioRpcError) as err:  # a viewer may not act
            await stub.PauseCampaign(pb.CampaignActionRequest(id=cp.id),
                                      metadata=(("authorization", "Bearer viewer-token"),))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetCampaign(pb.GetCampaignRequest(id=cp.id))
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        every = await stub.ListCampaigns(pb.ListCampaignsRequest(filter="workspace=wm", show_all=True),
                                         metadata=(("authorization", "Bearer master-token"),))
        assert [(x.id, x.workspace_id) for x in every.campaigns] == [(cp.id, "wm")]  # CANCELLED
    await rt.shutdown(0)


async def test_retry_failed_messages(h: Harness) -> None:
    ws = md("wr")
    req = sms(4)
    req.campaign.auto_start = True
    cp = await h.stub.CreateCampaign(req, metadata=ws)
    await h.stub.ApproveCampaign(pb.CampaignActionRequest(id=cp.id), metadata=ws)
    await h.ticks(0.6)
    msgs = (await h.stub.ListMessages(pb.ListMessagesRequest(campaign_id=cp.id), metadata=ws)).messages
    failed, opted, ok = msgs[0].id, msgs[1].id, [m.id for m in msgs[2:]]
    async with h.engine.begin() as conn:
        await conn.execute(update(messages).where(messages.c.id == failed).values(
            status=S.MESSAGE_STATUS_FAILED, status_rank=5, error_code="0x00000058"))
        await conn.execute(update(messages).where(messages.c.id == opted).values(
            status=S.MESSAGE_STATUS_FAILED, status_rank=5, failure_category=c.FAILURE_CATEGORY_UNSUBSCRIBED))
        await conn.execute(update(messages).where(messages.c.id.in_(ok)).values(
            status=S.MESSAGE_STATUS_DELIVERED, status_rank=5))
    await h.ticks(0.4)
    assert (await h.status(cp.id, ws)).status == pb.CAMPAIGN_STATUS_DONE
    other = await h.stub.CreateCampaign(sms(1), metadata=ws)
    await force(h, other.id, "SENDING")
    with pytest.raises(grpc.aio.AioRpcError) as err:  # seed rule: another SMS campaign is sending
        await h.stub.RetryMessages(pb.RetryMessagesRequest(campaign_id=cp.id), metadata=ws)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and other.id in err.value.details()
    await force(h, other.id, "DONE")
    res = await h.stub.RetryMessages(pb.RetryMessagesRequest(
        campaign_id=cp.id, filter="result=failed", request_id="rt-1"), metadata=ws)
    assert (res.retried, res.skipped) == (1, 1)
    assert res.campaign.status == pb.CAMPAIGN_STATUS_SENDING
    again = await h.stub.RetryMessages(pb.RetryMessagesRequest(
        campaign_id=cp.id, filter="result=failed", request_id="rt-1"), metadata=ws)
    assert again == res
    m = (await h.stub.ListMessages(pb.ListMessagesRequest(campaign_id=cp.id, filter="status=QUEUED"),
                                   metadata=ws)).messages
    assert [(x.id, x.attempt, x.error_code) for x in m] == [(failed, 2, "")]
    # A late event of the first attempt changes nothing; the second attempt's does.
    async with h.engine.begin() as conn:
        await apply_batch(conn, [
            e.MessageEvent(kind=e.MESSAGE_EVENT_KIND_FAILED, message_id=failed, attempt=1,
                           status=S.MESSAGE_STATUS_FAILED),
            e.MessageEvent(kind=e.MESSAGE_EVENT_KIND_SUBMITTED, message_id=failed, attempt=2,
                           status=S.MESSAGE_STATUS_SUBMITTED)], h.clock.now())
    async with h.engine.connect() as conn:
        st = (await conn.execute(select(messages.c.status).where(messages.c.id == failed))).scalar_one()
    assert st == S.MESSAGE_STATUS_SUBMITTED
    assert await h.scheduler.tick() == 0  # a SUBMITTED row is not dispatched again


async def test_new_campaign_from_the_failed_recipients_of_another(h: Harness) -> None:
    ws = md("wsrc")
    src = await h.stub.CreateCampaign(sms(1), metadata=ws)
    now = h.clock.now()
    async with h.engine.begin() as conn:
        for i, st in enumerate((S.MESSAGE_STATUS_FAILED, S.MESSAGE_STATUS_DELIVERED, S.MESSAGE_STATUS_FAILED)):
            await conn.execute(insert(messages).values(
                id=f"{src.id[:8]}-{i}", campaign_id=src.id, workspace_id="wsrc",
                address=f"+44770090030{i}", contact_name="Ann Lee", channel=c.CHANNEL_SMS, status=st,
                status_rank=5, fields={"plan": "gold"}, created_at=now))
    req = pb.CreateCampaignRequest(source_campaign_id=src.id, campaign=pb.Campaign(
        channel=c.CHANNEL_SMS, sender=new_sender(), content=pb.Content(text="Second try")))
    cp = await h.stub.CreateCampaign(req, metadata=ws)
    assert cp.recipients_count == 2
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await h.stub.CreateCampaign(pb.CreateCampaignRequest(source_campaign_id=src.id, campaign=req.campaign),
                                    metadata=md("someone-else"))
    assert "source_campaign_id" in field_violations(err.value)
