"""Tenancy, end to end: a sender belongs to one workspace, so a reply or a STOP sent to it
reaches only the workspace whose message it answers, even when another workspace messaged the
same number from its own sender; and another workspace's campaign is NOT_FOUND on every RPC
that names it."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2 as rpb
from herald.v1 import stats_pb2 as spb

from shared.errors import field_violations
from tests.contract import stack
from tests.contract.stack import Caller, ContractStack

SENDER_A, SENDER_B = "HERALD", "BSHOP"


async def _replies(caller: Caller, campaign_id: str) -> list[cpb.Reply]:
    got = await caller.campaigns.ListReplies(cpb.ListRepliesRequest(campaign_id=campaign_id, page_size=100))
    return list(got.replies)


async def _suppressed(caller: Caller, phone: str) -> bool:
    got = await caller.recipients.ListSuppressions(rpb.ListSuppressionsRequest(page_size=1000))
    return any(s.address == phone for s in got.suppressions)


async def test_replies_and_stop_reach_only_the_workspace_whose_sender_they_answer(
        contract_stack: ContractStack, contract_admin_a: Caller, contract_admin_b: Caller) -> None:
    a, b = contract_admin_a, contract_admin_b
    phone = contract_stack.phones(1)[0]
    to = [c.Recipient(phone=phone, first_name="Tess")]
    sent_a = await stack.run_campaign(a, a, stack.sms_campaign("tenancy A", "From A", SENDER_A), to)

    # B cannot send as A's sender: refused at create, naming the field.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await b.campaigns.CreateCampaign(cpb.CreateCampaignRequest(
            request_id=f"steal-{time.time_ns()}", recipients=to,
            campaign=stack.sms_campaign("tenancy B steals", "From B", SENDER_A)))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    assert "campaign.sender" in field_violations(info.value), field_violations(info.value)

    # B messages the same number from its own sender, after A did.
    sent_b = await stack.run_campaign(b, b, stack.sms_campaign("tenancy B", "From B", SENDER_B), to)
    assert [(s.source, s.text) for s in contract_stack.submits_to(phone)] == [
        (SENDER_A, "From A"), (SENDER_B, "From B")]

    # The number answers A's sender: the reply is A's, however recent B's message is.
    assert await contract_stack.sim.inject_mo(phone.lstrip("+"), SENDER_A, "Yes please")
    replies = await stack.wait_for(lambda: _replies(a, sent_a.id), "A's reply")
    assert [(r.text, r.__getattribute__("from")) for r in replies] == [("Yes please", phone)]
    assert await _replies(b, sent_b.id) == []

    # STOP to A's sender suppresses the number in A only.
    assert await contract_stack.sim.inject_mo(phone.lstrip("+"), SENDER_A, "STOP")
    await stack.wait_for(lambda: _suppressed(a, phone), "A's suppression of the number")
    assert not await _suppressed(b, phone)
    again_b = await stack.run_campaign(b, b, stack.sms_campaign("tenancy B again", "B again", SENDER_B), to)
    assert again_b.progress.delivered == 1
    assert (SENDER_B, "B again") in [(s.source, s.text) for s in contract_stack.submits_to(phone)]
    again_a = await stack.run_campaign(a, a, stack.sms_campaign("tenancy A again", "A again", SENDER_A), to)
    msgs = await stack.all_messages(a, again_a.id)
    assert [m.status for m in msgs] == [c.MESSAGE_STATUS_OPTED_OUT] or [
        (m.status, m.failure_category) for m in msgs] == [(c.MESSAGE_STATUS_FAILED, c.FAILURE_CATEGORY_UNSUBSCRIBED)]
    assert (SENDER_A, "A again") not in [(s.source, s.text) for s in contract_stack.submits_to(phone)]


@pytest.fixture(scope="module")
async def contract_foreign(contract_stack: ContractStack, contract_admin_a: Caller) -> dict[str, Any]:
    """A DONE campaign of ws-a with a message, an export and a contact: ws-b must not see them."""
    a = contract_admin_a
    phone = contract_stack.phones(1)[0]
    done = await stack.run_campaign(a, a, stack.sms_campaign("foreign to B", "Hello", SENDER_A),
                                    [c.Recipient(phone=phone)])
    msgs = await stack.all_messages(a, done.id)
    export = await stack.finished_export(a, done.id)
    contact = await stack.upsert_contacts(a, [rpb.Contact(phone=phone, external_id=f"foreign-{time.time_ns()}")])
    return {"campaign": done.id, "message": msgs[0].id, "export": export.id, "contact": contact[0]}


def _foreign_calls(ids: dict[str, Any]) -> dict[str, Callable[[Caller], Awaitable[Any]]]:
    cid = ids["campaign"]
    act = cpb.CampaignActionRequest(id=cid, request_id=f"foreign-{time.time_ns()}")

    async def download(b: Caller) -> bytes:
        return await stack.download_export(b, ids["export"])

    async def watch(b: Caller) -> list[Any]:
        stream = b.stats.WatchCampaignStats(spb.WatchCampaignStatsRequest(campaign_id=cid, interval_ms=100))
        out = []
        async for item in stream:
            out.append(item)
            break
        return out

    return {
        "GetCampaign": lambda b: b.campaigns.GetCampaign(cpb.GetCampaignRequest(id=cid)),
        "ListMessages": lambda b: b.campaigns.ListMessages(cpb.ListMessagesRequest(campaign_id=cid)),
        "ListAuditEvents": lambda b: b.campaigns.ListAuditEvents(cpb.ListAuditEventsRequest(campaign_id=cid)),
        "ListReplies": lambda b: b.campaigns.ListReplies(cpb.ListRepliesRequest(campaign_id=cid)),
        "ListClicks": lambda b: b.campaigns.ListClicks(cpb.ListClicksRequest(campaign_id=cid)),
        "ListJobErrors": lambda b: b.campaigns.ListJobErrors(cpb.ListJobErrorsRequest(campaign_id=cid)),
        "ListExports": lambda b: b.campaigns.ListExports(cpb.ListExportsRequest(campaign_id=cid)),
        "CreateExport": lambda b: b.campaigns.CreateExport(cpb.CreateExportRequest(campaign_id=cid)),
        "GetExport": lambda b: b.campaigns.GetExport(cpb.GetExportRequest(id=ids["export"])),
        "DownloadExport": download,
        "PreviewContent": lambda b: b.campaigns.PreviewContent(cpb.PreviewContentRequest(campaign_id=cid)),
        "RetryMessages": lambda b: b.campaigns.RetryMessages(cpb.RetryMessagesRequest(campaign_id=cid)),
        "TriggerCampaign": lambda b: b.campaigns.TriggerCampaign(cpb.TriggerCampaignRequest(
            campaign_id=cid, recipient=c.Recipient(phone="+447700900599"))),
        "PromoteVariant": lambda b: b.campaigns.PromoteVariant(cpb.PromoteVariantRequest(campaign_id=cid, variant="A")),
        "ReconcileCampaign": lambda b: b.campaigns.ReconcileCampaign(cpb.ReconcileCampaignRequest(campaign_id=cid)),
        "UpdateCampaign": lambda b: b.campaigns.UpdateCampaign(cpb.UpdateCampaignRequest(
            campaign=cpb.Campaign(id=cid, name="taken over"), update_mask={"paths": ["name"]})),
        "ArchiveCampaign": lambda b: b.campaigns.ArchiveCampaign(act),
        "RestoreCampaign": lambda b: b.campaigns.RestoreCampaign(act),
        "DeleteCampaign": lambda b: b.campaigns.DeleteCampaign(act),
        "CancelCampaign": lambda b: b.campaigns.CancelCampaign(act),
        "PauseCampaign": lambda b: b.campaigns.PauseCampaign(act),
        "ResumeCampaign": lambda b: b.campaigns.ResumeCampaign(act),
        "StartCampaign": lambda b: b.campaigns.StartCampaign(act),
        "SubmitCampaign": lambda b: b.campaigns.SubmitCampaign(act),
        "ApproveCampaign": lambda b: b.campaigns.ApproveCampaign(act),
        "RejectCampaign": lambda b: b.campaigns.RejectCampaign(act),
        "GetCampaignStats": lambda b: b.stats.GetCampaignStats(spb.GetCampaignStatsRequest(campaign_id=cid)),
        "RebuildCampaignStats": lambda b: b.stats.RebuildCampaignStats(
            spb.RebuildCampaignStatsRequest(campaign_id=cid)),
        "WatchCampaignStats": watch,
        "GetContact": lambda b: b.recipients.GetContact(rpb.GetContactRequest(id=ids["contact"])),
    }


FOREIGN = sorted(_foreign_calls({"campaign": "", "message": "", "export": "", "contact": ""}))


@pytest.mark.parametrize("rpc", FOREIGN)
async def test_another_workspaces_campaign_is_not_found(
        contract_foreign: dict[str, Any], contract_admin_b: Caller, rpc: str) -> None:
    call = _foreign_calls(contract_foreign)[rpc]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(contract_admin_b)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND, (rpc, info.value.code(), info.value.details())


async def test_another_workspaces_rows_are_never_listed(
        contract_foreign: dict[str, Any], contract_admin_b: Caller) -> None:
    b = contract_admin_b
    listed = await b.campaigns.ListCampaigns(cpb.ListCampaignsRequest(show_all=True, show_archived=True,
                                                                      page_size=1000))
    assert contract_foreign["campaign"] not in [cp.id for cp in listed.campaigns]
    states = await b.stats.BatchGetMessageStates(spb.BatchGetMessageStatesRequest(
        message_ids=[contract_foreign["message"]]))
    assert list(states.states) == []
    contacts = await b.recipients.ListContacts(rpb.ListContactsRequest(page_size=1000))
    assert contract_foreign["contact"] not in [ct.id for ct in contacts.contacts]
