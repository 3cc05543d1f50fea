"""Sending, retries and the send detail, end to end through the full stack with real tokens:
previews and triggers are rendered per recipient; a retry never resends to a number that
replied STOP after its first attempt (it is excluded with its reason) and a TRIGGER campaign
never blocks it; a carrier failure after submission still counts as sent, with Stage and
Result told apart and the route that carried it; phone numbers are masked by the reader's
rights in descriptions, exports and trigger replays; exports need the operator role; a rate
or a body the dispatcher could never honour is refused at create."""

from __future__ import annotations

import csv
import io
import re
import time

import grpc
import pytest
from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2 as rpb

from tests.contract import stack
from tests.contract.stack import Caller, ContractStack

SENDER = "HERALD"  # ws-a's SMS sender in the contract suite


def caller(cs: ContractStack, role: str, pii: bool = False) -> Caller:
    return cs.caller(stack.WS_A, role, pii=pii)


def fail_at_carrier(cs: ContractStack, phone: str) -> None:
    """The SMSC accepts messages to this number, then sends an UNDELIV receipt."""
    cs.sim.sim.add_receipt_rule(re.escape(phone.lstrip("+")) + "$", "UNDELIV")


async def trigger_campaign(admin: Caller, text: str) -> cpb.Campaign:
    cp = await stack.create_and_approve(admin, admin, stack.sms_campaign(
        f"trigger {time.time_ns()}", text, SENDER, mode=cpb.CAMPAIGN_MODE_TRIGGER))

    async def sending() -> bool:
        got = await admin.campaigns.GetCampaign(cpb.GetCampaignRequest(id=cp.id))
        return got.status == cpb.CAMPAIGN_STATUS_SENDING

    await stack.wait_for(sending, "the trigger campaign to open")
    return cp


async def test_trigger_renders_per_call_fields_and_replays_masked(contract_stack: ContractStack) -> None:
    admin, operator = caller(contract_stack, "admin", pii=True), caller(contract_stack, "operator")
    (phone,) = contract_stack.phones(1)
    (contact,) = await stack.upsert_contacts(admin, [rpb.Contact(
        phone=phone, first_name="Ada", fields={"otp": "0000"}, external_id=f"otp-{time.time_ns()}")])
    cp = await trigger_campaign(admin, "Hi {{ first_name }}, your code is {{ otp }}")
    req = cpb.TriggerCampaignRequest(request_id=f"otp-{time.time_ns()}", campaign_id=cp.id,
                                     recipient=c.Recipient(contact_id=contact, fields={"otp": "9911"}))
    first = await admin.campaigns.TriggerCampaign(req)
    # The per-call field wins over the contact's; the preview is the rendered text.
    assert first.content_preview == "Hi Ada, your code is 9911"
    assert first.phone == phone
    texts = await stack.wait_for(lambda: _now([s.text for s in contract_stack.submits_to(phone)]),
                                 "the trigger's submit")
    assert texts == ["Hi Ada, your code is 9911"]
    # The same request_id replayed by an operator without pii: the first answer, masked.
    again = await operator.campaigns.TriggerCampaign(req)
    assert again.id == first.id
    assert again.phone == "*" * (len(phone) - 3) + phone[-3:]


async def test_retry_excludes_a_number_that_replied_stop(contract_stack: ContractStack) -> None:
    admin, operator = caller(contract_stack, "admin", pii=True), caller(contract_stack, "operator")
    stopper, other = contract_stack.phones(2)
    for p in (stopper, other):
        fail_at_carrier(contract_stack, p)
    # A TRIGGER campaign of the same channel stays SENDING: it must not block the retry.
    await trigger_campaign(admin, "Your code")
    done = await stack.run_campaign(admin, admin, stack.sms_campaign(
        f"retry {time.time_ns()}", "Winter sale", SENDER),
        recipients=[c.Recipient(phone=stopper), c.Recipient(phone=other)])
    # Submitted, then failed by the carrier: sent, Stage SUBMITTED, Result FAILED, with a route.
    assert done.progress.errors == 2 and done.progress.sent == 2, done.progress
    msgs = {m.phone: m for m in await stack.all_messages(admin, done.id)}
    for m in msgs.values():
        assert (m.stage, m.result) == (cpb.MESSAGE_STAGE_SUBMITTED, cpb.DELIVERY_RESULT_FAILED), m
        assert m.route, m
    # The first number replies STOP after its first attempt.
    assert await contract_stack.sim.inject_mo(stopper.lstrip("+"), SENDER, "STOP")

    async def suppressed() -> bool:
        page = await admin.recipients.ListSuppressions(rpb.ListSuppressionsRequest(
            filter="channel=SMS", page_size=1000))
        return stopper in [s.address for s in page.suppressions]

    await stack.wait_for(suppressed, f"{stopper} on the suppression list")
    resp = await operator.campaigns.RetryMessages(cpb.RetryMessagesRequest(
        request_id=f"retry-{time.time_ns()}", campaign_id=done.id))
    assert resp.retried == 1, resp
    (ex,) = resp.excluded
    assert ex.message_id == msgs[stopper].id and ex.category == c.FAILURE_CATEGORY_UNSUBSCRIBED
    assert stopper not in ex.reason and stopper[-3:] in ex.reason  # masked for a non-pii caller
    await stack.wait_for(lambda: _now(len(contract_stack.submits_to(other)) == 2), "the retried submit")
    await stack.wait_terminal(admin, done.id)
    assert len(contract_stack.submits_to(stopper)) == 1  # never resent


async def test_masking_by_the_readers_rights(contract_stack: ContractStack) -> None:
    admin = caller(contract_stack, "admin", pii=True)
    viewer, operator = caller(contract_stack, "viewer"), caller(contract_stack, "operator")
    opted, fine = contract_stack.phones(2)
    await admin.recipients.AddSuppression(rpb.AddSuppressionRequest(
        request_id=f"sup-{time.time_ns()}", channel=c.CHANNEL_SMS, address=opted, reason="STOP"))
    done = await stack.run_campaign(admin, admin, stack.sms_campaign(
        f"masking {time.time_ns()}", "Winter sale", SENDER),
        recipients=[c.Recipient(phone=opted), c.Recipient(phone=fine)])
    full = {m.phone: m for m in await stack.all_messages(admin, done.id)}
    assert opted in full[opted].error_description
    assert (full[opted].stage, full[opted].result) == (cpb.MESSAGE_STAGE_NOT_SENT,
                                                       cpb.DELIVERY_RESULT_UNKNOWN)
    seen = [m.error_description for m in await stack.all_messages(viewer, done.id)]
    assert all(opted not in d for d in seen) and any(opted[-3:] in d for d in seen), seen
    # An export built for a pii caller is masked for a downloader without pii.
    ex = await stack.finished_export(admin, done.id)
    assert ex.status == cpb.EXPORT_STATUS_DONE
    mine = (await stack.download_export(admin, ex.id)).decode()
    theirs = (await stack.download_export(operator, ex.id)).decode()
    assert opted in mine and fine in mine
    assert opted not in theirs and fine not in theirs
    rows = list(csv.DictReader(io.StringIO(theirs)))
    assert sorted(r["recipient"][-3:] for r in rows) == sorted([opted[-3:], fine[-3:]])
    # Exports need the operator role.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await viewer.campaigns.CreateExport(cpb.CreateExportRequest(
            request_id=f"exp-{time.time_ns()}", campaign_id=done.id))
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("campaign", [
    stack.sms_campaign("infinite rate", "Winter sale", SENDER, max_rate=float("inf")),
    stack.sms_campaign("huge body", "x" * (3 * 1024 * 1024), SENDER),
], ids=["max_rate_inf", "body_3mb"])
async def test_what_dispatch_could_never_send_is_refused_at_create(
        contract_stack: ContractStack, campaign: cpb.Campaign) -> None:
    admin = caller(contract_stack, "admin", pii=True)
    (phone,) = contract_stack.phones(1)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await admin.campaigns.CreateCampaign(cpb.CreateCampaignRequest(
            request_id=f"never-{time.time_ns()}", campaign=campaign, recipients=[c.Recipient(phone=phone)]))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def _now(value: object) -> object:
    return value
