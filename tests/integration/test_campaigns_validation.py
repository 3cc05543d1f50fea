"""CampaignService input checks through the real gRPC server and the real recipients service:
every bad input is INVALID_ARGUMENT naming its field at create/update (never accepted to fail
later, never INTERNAL), request_id bound to its call, page tokens bound to their query, the
moderation queue, PreviewContent and Progress counters."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import timedelta

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask
from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from sqlalchemy import insert

from services.campaigns.schema import messages
from shared.errors import field_violations
from tests.integration.campaigns_harness import Harness, new_sender, sms

S = c.MessageStatus
UUID = "7b0c4a52-3d55-4c8e-9a53-0d6f1d1d2c11"


def md(ws: str) -> tuple:
    return (("x-herald-workspace", ws),)


async def refused(call: object, req: object, ws: str = "wv") -> dict[str, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(req, metadata=md(ws))  # type: ignore[operator]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    return field_violations(err.value)


def email(**campaign: object) -> pb.CreateCampaignRequest:
    return pb.CreateCampaignRequest(
        campaign=pb.Campaign(**{"name": "e", "channel": c.CHANNEL_EMAIL,
                                "sender": f"news@{new_sender().lower()}.example.com",
                                "content": pb.Content(subject="Hi", text="Hello"), **campaign}),
        recipients=[c.Recipient(email="ann@example.com")])


async def test_targets_and_sender_are_checked_before_anything_is_stored(h: Harness) -> None:
    bad_phone = sms(1)
    bad_phone.recipients[0].phone = "12"
    assert any(f.startswith("recipients[0]") for f in await refused(h.stub.CreateCampaign, bad_phone))
    bad_email = email()
    bad_email.recipients[0].email = "not-an-address"
    assert any(f.startswith("recipients[0]") for f in await refused(h.stub.CreateCampaign, bad_email))
    unknown_cat = sms(1, category_ids=[UUID])
    assert "campaign.category_ids[0]" in await refused(h.stub.CreateCampaign, unknown_cat)
    unknown_contact = sms(0)
    unknown_contact.recipients.add(contact_id=UUID)
    assert any(f.startswith("recipients[0]") for f in await refused(h.stub.CreateCampaign, unknown_contact))
    taken = new_sender()
    await h.stub.CreateCampaign(sms(1, sender=taken), metadata=md("owner"))
    assert "campaign.sender" in await refused(h.stub.CreateCampaign, sms(1, sender=taken))
    listing = await h.stub.ListCampaigns(pb.ListCampaignsRequest(show_all=True), metadata=md("wv"))
    assert listing.total_size == 0  # nothing was stored


@pytest.mark.parametrize(("content", "field"), [
    ({"text": "Hi {{ first_name "}, "campaign.content.text"),
    ({"text": "line one\nHi {{ nickname }}"}, "campaign.content.text"),
])
async def test_sms_templates_are_checked(h: Harness, content: dict, field: str) -> None:
    bad = await refused(h.stub.CreateCampaign, sms(1, content=pb.Content(**content)))
    assert "line" in bad[field]


async def test_email_and_variant_templates_name_their_field(h: Harness) -> None:
    bad = await refused(h.stub.CreateCampaign, email(content=pb.Content(
        subject="{{ oops", html="<p>{{ missing }}</p>", text="ok")))
    assert set(bad) == {"campaign.content.subject", "campaign.content.html"}
    variants = [pb.Variant(name="A", split_percent=50, content=pb.Content(text="Hi {{ first_name }}")),
                pb.Variant(name="B", split_percent=50, content=pb.Content(text="Hi {% if %}"))]
    bad = await refused(h.stub.CreateCampaign, sms(1, variants=variants))
    assert list(bad) == ["campaign.variants[1].content.text"]


async def test_known_fields_and_trigger_variables_are_accepted(h: Harness) -> None:
    req = sms(1, content=pb.Content(text="Hi {{ first_name }}, code {{ promo }}"))
    req.recipients[0].fields["promo"] = "SPRING"
    assert (await h.stub.CreateCampaign(req, metadata=md("wv"))).id
    trigger = sms(0, mode=pb.CAMPAIGN_MODE_TRIGGER, content=pb.Content(text="Code {{ otp }}"))
    assert (await h.stub.CreateCampaign(trigger, metadata=md("wv"))).id
    broken = sms(0, mode=pb.CAMPAIGN_MODE_TRIGGER, content=pb.Content(text="Code {{ otp "))
    assert "campaign.content.text" in await refused(h.stub.CreateCampaign, broken)


async def test_content_size_limits(h: Harness) -> None:
    long_sms = sms(1, content=pb.Content(text="x" * (153 * 10 + 1)))
    assert "parts" in (await refused(h.stub.CreateCampaign, long_sms))["campaign.content.text"]
    assert (await h.stub.CreateCampaign(sms(1, content=pb.Content(text="x" * 153 * 10)),
                                        metadata=md("wv"))).id
    huge = email(content=pb.Content(subject="Big", html="<p>" + "x" * 3_000_000 + "</p>"))
    assert "bytes" in (await refused(h.stub.CreateCampaign, huge))["campaign.content"]


async def test_boundaries_of_every_campaign_field(h: Harness) -> None:
    now = h.clock.now()
    cases: list[tuple[pb.CreateCampaignRequest, str]] = []
    far = sms(1, mode=pb.CAMPAIGN_MODE_ON_TIME)
    far.campaign.start_at.seconds = 10 ** 13
    cases.append((far, "campaign.start_at"))
    past = sms(1, mode=pb.CAMPAIGN_MODE_ON_TIME)
    past.campaign.start_at.FromDatetime(now - timedelta(hours=1))
    cases.append((past, "campaign.start_at"))
    order = sms(1, mode=pb.CAMPAIGN_MODE_SPREAD)
    order.campaign.start_at.FromDatetime(now + timedelta(hours=2))
    order.campaign.end_at.FromDatetime(now + timedelta(hours=1))
    cases.append((order, "campaign.end_at"))
    for rate in (float("nan"), float("inf"), 1e12, -1.0):
        cases.append((sms(1, max_rate=rate), "campaign.max_rate"))
    cases += [(sms(1, auto_pause_failures=-5), "campaign.auto_pause_failures"),
              (sms(1, name="n" * 201), "campaign.name"),
              (sms(1, description="d" * 2001), "campaign.description"),
              (sms(1, sender="s" * 101), "campaign.sender"),
              (sms(1, request_id="r" * 129), "request_id"),
              (sms(1, channel=99), "campaign.channel"),
              (sms(1, mode=77), "campaign.mode"),
              (sms(1, category_ids=["not-a-uuid"]), "campaign.category_ids[0]")]
    bad_contact = sms(0)
    bad_contact.recipients.add(contact_id="42")
    cases.append((bad_contact, "recipients[0].contact_id"))
    source = sms(1)
    source.source_campaign_id = "nope"
    cases.append((source, "source_campaign_id"))
    for req, field in cases:
        assert field in await refused(h.stub.CreateCampaign, req), field


async def test_malformed_ids_and_list_inputs_are_invalid_argument(h: Harness) -> None:
    s = h.stub
    assert "id" in await refused(s.GetCampaign, pb.GetCampaignRequest(id="x"))
    assert "campaign_id" in await refused(s.ListAuditEvents, pb.ListAuditEventsRequest(campaign_id="x"))
    for rpc in ("SubmitCampaign", "ApproveCampaign", "StartCampaign", "CancelCampaign",
                "DeleteCampaign", "ArchiveCampaign"):
        assert "id" in await refused(getattr(s, rpc), pb.CampaignActionRequest(id="1 OR 1=1")), rpc
    upd = pb.UpdateCampaignRequest(campaign=pb.Campaign(id="x", name="n"),
                                   update_mask=FieldMask(paths=["name"]))
    assert "campaign.id" in await refused(s.UpdateCampaign, upd)
    cp = await s.CreateCampaign(sms(1), metadata=md("wv"))
    odd_mask = pb.UpdateCampaignRequest(campaign=pb.Campaign(id=cp.id), update_mask=FieldMask(paths=["id.x"]))
    assert "update_mask" in await refused(s.UpdateCampaign, odd_mask)
    for req, field in ((pb.PreviewContentRequest(campaign_id="x"), "campaign_id"),
                       (pb.PreviewContentRequest(campaign_id=cp.id, contact_id="x"), "contact_id")):
        assert field in await refused(s.PreviewContent, req)
    for flt in ("status=NOPE", "a\x00=b", 'search="open', "x" * 5000):
        assert "filter" in await refused(s.ListCampaigns, pb.ListCampaignsRequest(filter=flt))
    assert "order_by" in await refused(s.ListCampaigns, pb.ListCampaignsRequest(order_by="id; drop"))
    forged = base64.urlsafe_b64encode(json.dumps({"o": 10 ** 20, "d": "00"}).encode()).decode()
    assert "page_token" in await refused(s.ListCampaigns, pb.ListCampaignsRequest(page_token=forged))
    assert "page_token" in await refused(s.ListCampaigns, pb.ListCampaignsRequest(page_token="%%%"))
    ok = await s.ListCampaigns(pb.ListCampaignsRequest(page_size=-5, show_all=True), metadata=md("wv"))
    assert [x.id for x in ok.campaigns] == [cp.id]


async def test_update_applies_the_same_checks(h: Harness) -> None:
    cp = await h.stub.CreateCampaign(sms(1), metadata=md("wv"))

    def edit(path: str, **campaign: object) -> pb.UpdateCampaignRequest:
        return pb.UpdateCampaignRequest(campaign=pb.Campaign(id=cp.id, **campaign),
                                        update_mask=FieldMask(paths=[path]))

    assert "campaign.content.text" in await refused(
        h.stub.UpdateCampaign, edit("content", content=pb.Content(text="{{ nobody }}")))
    assert "campaign.category_ids[0]" in await refused(
        h.stub.UpdateCampaign, edit("category_ids", category_ids=[UUID]))
    assert "campaign.max_rate" in await refused(h.stub.UpdateCampaign, edit("max_rate", max_rate=float("nan")))
    past = edit("start_at")
    past.campaign.start_at.FromDatetime(h.clock.now() - timedelta(days=1))
    past.update_mask.paths.append("mode")
    past.campaign.mode = pb.CAMPAIGN_MODE_ON_TIME
    assert "campaign.start_at" in await refused(h.stub.UpdateCampaign, past)
    assert (await h.stub.UpdateCampaign(edit("name", name="renamed"), metadata=md("wv"))).name == "renamed"


async def test_request_id_is_bound_to_its_call(h: Harness) -> None:
    ws = md("wv")
    one = await h.stub.CreateCampaign(sms(1), metadata=ws)
    two = await h.stub.CreateCampaign(sms(1), metadata=ws)
    first = await h.stub.CancelCampaign(pb.CampaignActionRequest(id=one.id, request_id="k"), metadata=ws)
    assert "request_id" in await refused(h.stub.CancelCampaign, pb.CampaignActionRequest(id=two.id, request_id="k"))
    again = await h.stub.CancelCampaign(pb.CampaignActionRequest(id=one.id, request_id="k"), metadata=ws)
    assert again == first
    assert (await h.status(two.id, ws)).status == pb.CAMPAIGN_STATUS_NEW
    req = sms(1, request_id="create-1")
    await h.stub.CreateCampaign(req, metadata=ws)
    req.campaign.name = "other body"
    assert "request_id" in await refused(h.stub.CreateCampaign, req)


async def test_page_tokens_are_bound_to_their_query(h: Harness) -> None:
    ws = md("wp")
    made = [await h.stub.CreateCampaign(sms(1), metadata=ws) for _ in range(3)]
    page = await h.stub.ListCampaigns(pb.ListCampaignsRequest(page_size=2, show_all=True), metadata=ws)
    rest = await h.stub.ListCampaigns(pb.ListCampaignsRequest(
        page_size=2, show_all=True, page_token=page.next_page_token), metadata=ws)
    assert {x.id for x in [*page.campaigns, *rest.campaigns]} == {x.id for x in made}
    assert "page_token" in await refused(h.stub.ListCampaigns, pb.ListCampaignsRequest(
        page_size=2, show_all=True, filter="channel=SMS", page_token=page.next_page_token), "wp")
    assert "page_token" in await refused(h.stub.ListAuditEvents, pb.ListAuditEventsRequest(
        campaign_id=made[0].id, page_token=page.next_page_token), "wp")


async def test_new_campaigns_are_in_the_moderation_queue_only(h: Harness) -> None:
    ws = md("wq")
    new = await h.stub.CreateCampaign(sms(1), metadata=ws)
    draft = await h.stub.CreateCampaign(sms(1, draft=True), metadata=ws)

    async def ids(**kw: object) -> list[str]:
        r = await h.stub.ListCampaigns(pb.ListCampaignsRequest(**kw), metadata=ws)
        return sorted(x.id for x in r.campaigns)

    assert await ids() == [draft.id]
    assert await ids(moderation_queue=True) == [new.id]
    assert await ids(filter="status=NEW") == [new.id]
    assert await ids(show_all=True) == sorted([new.id, draft.id])


async def test_create_announces_the_campaign(h: Harness) -> None:
    got: asyncio.Queue[e.CampaignEvent] = asyncio.Queue()

    async def on(msg: object) -> None:
        ev = e.CampaignEvent()
        ev.ParseFromString(msg.data)  # type: ignore[attr-defined]
        await got.put(ev)

    sub = await h.nc.subscribe("events.campaign.status_changed", cb=on)
    cp = await h.stub.CreateCampaign(sms(1, draft=True), metadata=md("wa"))
    ev = await asyncio.wait_for(got.get(), 10)
    await sub.unsubscribe()
    assert (ev.campaign_id, ev.workspace_id, ev.status, ev.previous_status) == (cp.id, "wa", "DRAFT", "")


async def test_preview_renders_for_a_sample_a_contact_and_inline_content(h: Harness) -> None:
    ws = md("wr")
    cp = await h.stub.CreateCampaign(sms(1, content=pb.Content(text="Hi {{ first_name }} €")), metadata=ws)
    out = await h.stub.PreviewContent(pb.PreviewContentRequest(campaign_id=cp.id), metadata=ws)
    assert (out.text, out.sms_encoding, out.sms_parts, list(out.variables)) == (
        "Hi Alex €", "GSM-7", 1, ["first_name"])
    sample = await h.stub.PreviewContent(pb.PreviewContentRequest(
        campaign_id=cp.id, sample=c.Recipient(first_name="Zoë")), metadata=ws)
    assert sample.text == "Hi Zoë €"
    inline = await h.stub.PreviewContent(pb.PreviewContentRequest(
        channel=c.CHANNEL_EMAIL, content=pb.Content(subject="Hello {{ first_name }}",
                                                    html="<b>{{ last_name }}</b>")), metadata=ws)
    assert (inline.subject, inline.html, inline.sms_parts) == ("Hello Alex", "<b>Martin</b>", 0)
    bad = await refused(h.stub.PreviewContent, pb.PreviewContentRequest(
        channel=c.CHANNEL_SMS, content=pb.Content(text="{{ x ")), "wr")
    assert "content.text" in bad
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await h.stub.PreviewContent(pb.PreviewContentRequest(campaign_id=cp.id, contact_id=UUID), metadata=ws)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_progress_counts_every_documented_state(h: Harness) -> None:
    cp = await h.stub.CreateCampaign(sms(1), metadata=md("wg"))
    now = h.clock.now()
    # (status, handed to the carrier): a carrier failure after submission still counts as sent.
    rows = [(S.MESSAGE_STATUS_QUEUED, False), (S.MESSAGE_STATUS_SENDING, False),
            (S.MESSAGE_STATUS_SUBMITTED, True), (S.MESSAGE_STATUS_DELIVERED, True),
            (S.MESSAGE_STATUS_ASSUMED_DELIVERED, True), (S.MESSAGE_STATUS_DEFERRED, False),
            (S.MESSAGE_STATUS_FAILED, True), (S.MESSAGE_STATUS_FAILED, False),
            (S.MESSAGE_STATUS_OPTED_OUT, False), (S.MESSAGE_STATUS_CANCELLED, False)]
    async with h.engine.begin() as conn:
        for i, (st, sent) in enumerate(rows):
            await conn.execute(insert(messages).values(
                id=f"{cp.id[:8]}-{i}", campaign_id=cp.id, workspace_id="wg",
                address=f"+447700900{i:03d}", channel=c.CHANNEL_SMS, status=st, status_rank=0,
                fields={}, created_at=now, sent_at=now if sent else None))
    p = (await h.status(cp.id, md("wg"))).progress
    assert (p.total, p.processed, p.sent, p.delivered, p.errors, p.opted_out) == (10, 8, 4, 1, 2, 1)
    assert (p.queued, p.sending, p.submitted, p.assumed_delivered, p.deferred, p.cancelled) == (
        1, 1, 1, 1, 1, 1)
