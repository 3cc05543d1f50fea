"""CampaignService against its documented contract, one test per observed defect: each of
these passed on the code before the fix (accepted bad input, INTERNAL, replays across calls,
tokens across lists, NOT_FOUND for malformed ids, NEW campaigns in the main list)."""

from __future__ import annotations

import base64

import grpc
import pytest
from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c

from shared.errors import field_violations
from tests.integration import conftest as fixtures
from tests.integration.campaigns_harness import Harness, new_sender, sms

# The campaigns harness fixtures (private NATS, the real recipients service, fresh SQL).
campaign_servers, h = fixtures.campaign_servers, fixtures.h

WS = (("x-herald-workspace", "contract"),)


async def invalid(call: object, req: object) -> dict[str, str]:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(req, metadata=WS)  # type: ignore[operator]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.value.code(), err.value.details())
    return field_violations(err.value)


async def test_accepted_then_failing_later_invalid_address(h: Harness) -> None:
    req = sms(1)
    req.recipients[0].phone = "12"
    assert any(f.startswith("recipients[0]") for f in await invalid(h.stub.CreateCampaign, req))


async def test_accepted_then_failing_later_unknown_category(h: Harness) -> None:
    req = sms(1, category_ids=["7b0c4a52-3d55-4c8e-9a53-0d6f1d1d2c11"])
    assert "campaign.category_ids[0]" in await invalid(h.stub.CreateCampaign, req)


async def test_template_with_unknown_variable_refused_at_create(h: Harness) -> None:
    req = sms(1, content=pb.Content(text="Hello\n{{ frist_name }}"))
    assert "line 2" in (await invalid(h.stub.CreateCampaign, req))["campaign.content.text"]


async def test_oversized_email_refused_at_create(h: Harness) -> None:
    req = pb.CreateCampaignRequest(
        campaign=pb.Campaign(name="big", channel=c.CHANNEL_EMAIL,
                             sender=f"news@{new_sender().lower()}.example.com",
                             content=pb.Content(subject="Big", html="x" * 3_000_000)),
        recipients=[c.Recipient(email="ann@example.com")])
    assert "campaign.content" in await invalid(h.stub.CreateCampaign, req)


async def test_internal_with_internal_text_huge_page_token_offset(h: Harness) -> None:
    token = base64.urlsafe_b64encode(b"o:" + b"9" * 30).decode()
    assert "page_token" in await invalid(h.stub.ListCampaigns, pb.ListCampaignsRequest(page_token=token))


async def test_internal_with_internal_text_out_of_range_timestamp(h: Harness) -> None:
    req = sms(1, mode=pb.CAMPAIGN_MODE_ON_TIME)
    req.campaign.start_at.seconds = 10 ** 13
    assert "campaign.start_at" in await invalid(h.stub.CreateCampaign, req)


async def test_internal_with_internal_text_max_rate_nan(h: Harness) -> None:
    assert "campaign.max_rate" in await invalid(h.stub.CreateCampaign, sms(1, max_rate=float("nan")))


async def test_request_id_replayed_on_another_campaign_returns_the_first_answer(h: Harness) -> None:
    one = await h.stub.CreateCampaign(sms(1), metadata=WS)
    two = await h.stub.CreateCampaign(sms(1), metadata=WS)
    await h.stub.CancelCampaign(pb.CampaignActionRequest(id=one.id, request_id="same"), metadata=WS)
    bad = await invalid(h.stub.CancelCampaign, pb.CampaignActionRequest(id=two.id, request_id="same"))
    assert "request_id" in bad


async def test_page_tokens_usable_on_another_list(h: Harness) -> None:
    made = [await h.stub.CreateCampaign(sms(1, draft=True), metadata=WS) for _ in range(2)]
    page = await h.stub.ListCampaigns(pb.ListCampaignsRequest(page_size=1), metadata=WS)
    assert page.next_page_token
    other = pb.ListAuditEventsRequest(campaign_id=made[0].id, page_token=page.next_page_token)
    assert "page_token" in await invalid(h.stub.ListAuditEvents, other)


async def test_invalid_uuids_give_not_found(h: Harness) -> None:
    assert "id" in await invalid(h.stub.GetCampaign, pb.GetCampaignRequest(id="not-a-uuid"))
    assert "campaign_id" in await invalid(h.stub.ListAuditEvents,
                                          pb.ListAuditEventsRequest(campaign_id="not-a-uuid"))
    assert "id" in await invalid(h.stub.ApproveCampaign, pb.CampaignActionRequest(id="not-a-uuid"))


async def test_new_campaigns_show_in_the_main_list(h: Harness) -> None:
    new = await h.stub.CreateCampaign(sms(1), metadata=WS)
    main = await h.stub.ListCampaigns(pb.ListCampaignsRequest(), metadata=WS)
    assert new.id not in [x.id for x in main.campaigns]
    queue = await h.stub.ListCampaigns(pb.ListCampaignsRequest(moderation_queue=True), metadata=WS)
    assert new.id in [x.id for x in queue.campaigns]


async def test_accepted_then_failing_later_schedule_in_the_past(h: Harness) -> None:
    # Accepted before: the campaign then went straight to EXPIRED (end_at) or started at once.
    past = int(h.clock.now().timestamp()) - 3600
    on_time = sms(1, mode=pb.CAMPAIGN_MODE_ON_TIME)
    on_time.campaign.start_at.seconds = past
    assert "campaign.start_at" in await invalid(h.stub.CreateCampaign, on_time)
    spread = sms(1, mode=pb.CAMPAIGN_MODE_SPREAD)
    spread.campaign.start_at.seconds = past - 3600
    spread.campaign.end_at.seconds = past
    assert "campaign.end_at" in await invalid(h.stub.CreateCampaign, spread)


async def test_accepted_then_failing_later_unknown_contact(h: Harness) -> None:
    req = sms(0)
    req.recipients.add(contact_id="7b0c4a52-3d55-4c8e-9a53-0d6f1d1d2c12")
    assert "recipients[0].contact_id" in await invalid(h.stub.CreateCampaign, req)
