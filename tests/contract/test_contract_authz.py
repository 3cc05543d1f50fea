"""Authorisation and masking, over gRPC against the full stack.

Expected outcome of every RPC for every caller (protos' CampaignService header, docs/api.md
"Roles"; where they are silent: the servicer today, which is what a mature product does):

  callers: viewer, operator, moderator, admin (tokens of ws-a or ws-b), service (the services'
  token acting for a workspace), none (no token), unknown (a token nobody issued)
  none / unknown                        -> UNAUTHENTICATED, every RPC
  a role outside the RPC's roles        -> PERMISSION_DENIED (own and foreign target alike)
  an allowed role, own workspace        -> OK (the target is prepared in a legal state)
  an allowed role, foreign target       -> NOT_FOUND (a ws-b caller naming ws-a's resource)

  RPC                                         allowed roles                    target
  CampaignService.CreateCampaign              operator admin                   workspace
  GetCampaign ListCampaigns PreviewContent
    GetCampaignKpis ListAuditEvents
    ListMessages GetExport ListExports
    DownloadExport ListJobErrors ListReplies
    ListClicks ReconcileCampaign              every role (viewer and up, service) campaign / export / workspace
  SubmitCampaign StartCampaign PauseCampaign
    ResumeCampaign CancelCampaign
    UpdateCampaign ArchiveCampaign
    RestoreCampaign DeleteCampaign
    RetryMessages CreateExport PromoteVariant operator admin                   campaign
  ApproveCampaign RejectCampaign              moderator admin                  campaign
  TriggerCampaign                             operator admin service           campaign
  RecipientService.UpsertContacts CreateCategory
    AddSuppression ImportContacts             operator admin service           workspace
  UpdateCategory DeleteCategory               operator admin service           category
  RemoveSuppression (an entry added by hand)  operator admin service           suppression
  GetContact                                  every role                       contact
  ListContacts ListCategories ListSuppressions
    ListSenders ResolveAudience ValidateTargets
    ResolveAudienceChunks                     every role                       workspace
  RegisterSender DeleteSender                 admin                            workspace
  StatsService.GetCampaignStats WatchCampaignStats every role                  campaign
  StatsService.RebuildCampaignStats           operator admin service           campaign
  GetWorkspaceStats BatchGetMessageStates     every role                       workspace

  PromoteVariant on a campaign without variants is INVALID_ARGUMENT naming `variant` for an
  allowed role (the named variant is not one of the campaign's); everything else allowed
  answers OK.

Masking: for a caller without pii the full number (+447700900xxx) never appears in a field
that can carry one (Message.phone and error_description, Reply.from, Contact.phone, export
CSV and TXT cells, AuditEvent before/after, RetryExclusion.reason, a TriggerCampaign replay,
PreviewContent rendering {{ phone }}); for a caller with pii it does (the check sees them).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2 as rpb
from herald.v1 import stats_pb2 as spb

from tests.contract import stack
from tests.contract.stack import Caller, ContractStack

OK, DENIED, NOT_FOUND, UNAUTH, BAD = "OK", "PERMISSION_DENIED", "NOT_FOUND", "UNAUTHENTICATED", \
    "INVALID_ARGUMENT"
EVERY = frozenset({"viewer", "operator", "moderator", "admin", "service"})
OPERATOR = frozenset({"operator", "admin"})
MODERATOR = frozenset({"moderator", "admin"})
WRITERS = frozenset({"operator", "admin", "service"})
ADMIN = frozenset({"admin"})
CALLERS = ("viewer", "operator", "moderator", "admin", "service", None, "unknown")
SENDER = "HERALD"  # ws-a's sender


@dataclass(frozen=True)
class Rule:
    roles: frozenset[str]
    target: str  # "workspace" (no foreign variant) or the kind of ws-a resource it names
    allowed: str = OK  # outcome for an allowed role on its own workspace's target


TABLE: dict[str, Rule] = {
    "CampaignService.CreateCampaign": Rule(OPERATOR, "workspace"),
    "CampaignService.GetCampaign": Rule(EVERY, "campaign"),
    "CampaignService.ListCampaigns": Rule(EVERY, "workspace"),
    "CampaignService.PreviewContent": Rule(EVERY, "campaign"),
    "CampaignService.SubmitCampaign": Rule(OPERATOR, "campaign"),
    "CampaignService.ApproveCampaign": Rule(MODERATOR, "campaign"),
    "CampaignService.RejectCampaign": Rule(MODERATOR, "campaign"),
    "CampaignService.StartCampaign": Rule(OPERATOR, "campaign"),
    "CampaignService.PauseCampaign": Rule(OPERATOR, "campaign"),
    "CampaignService.ResumeCampaign": Rule(OPERATOR, "campaign"),
    "CampaignService.CancelCampaign": Rule(OPERATOR, "campaign"),
    "CampaignService.UpdateCampaign": Rule(OPERATOR, "campaign"),
    "CampaignService.ArchiveCampaign": Rule(OPERATOR, "campaign"),
    "CampaignService.RestoreCampaign": Rule(OPERATOR, "campaign"),
    "CampaignService.DeleteCampaign": Rule(OPERATOR, "campaign"),
    "CampaignService.TriggerCampaign": Rule(WRITERS, "campaign"),
    "CampaignService.GetCampaignKpis": Rule(EVERY, "workspace"),
    "CampaignService.ListAuditEvents": Rule(EVERY, "campaign"),
    "CampaignService.ListMessages": Rule(EVERY, "campaign"),
    "CampaignService.RetryMessages": Rule(OPERATOR, "campaign"),
    "CampaignService.CreateExport": Rule(OPERATOR, "campaign"),
    "CampaignService.GetExport": Rule(EVERY, "export"),
    "CampaignService.ListExports": Rule(EVERY, "campaign"),
    "CampaignService.DownloadExport": Rule(EVERY, "export"),
    "CampaignService.ListJobErrors": Rule(EVERY, "campaign"),
    "CampaignService.ListReplies": Rule(EVERY, "campaign"),
    "CampaignService.ListClicks": Rule(EVERY, "campaign"),
    "CampaignService.PromoteVariant": Rule(OPERATOR, "campaign", BAD),
    "CampaignService.ReconcileCampaign": Rule(EVERY, "campaign"),
    "RecipientService.UpsertContacts": Rule(WRITERS, "workspace"),
    "RecipientService.ImportContacts": Rule(WRITERS, "workspace"),
    "RecipientService.GetContact": Rule(EVERY, "contact"),
    "RecipientService.ListContacts": Rule(EVERY, "workspace"),
    "RecipientService.CreateCategory": Rule(WRITERS, "workspace"),
    "RecipientService.ListCategories": Rule(EVERY, "workspace"),
    "RecipientService.ResolveAudience": Rule(EVERY, "workspace"),
    "RecipientService.ResolveAudienceChunks": Rule(EVERY, "workspace"),
    "RecipientService.AddSuppression": Rule(WRITERS, "workspace"),
    "RecipientService.ListSuppressions": Rule(EVERY, "workspace"),
    "RecipientService.UpdateCategory": Rule(WRITERS, "category"),
    "RecipientService.DeleteCategory": Rule(WRITERS, "category"),
    "RecipientService.RemoveSuppression": Rule(WRITERS, "suppression"),
    "RecipientService.ValidateTargets": Rule(EVERY, "workspace"),
    "RecipientService.RegisterSender": Rule(ADMIN, "workspace"),
    "RecipientService.ListSenders": Rule(EVERY, "workspace"),
    "RecipientService.DeleteSender": Rule(ADMIN, "workspace"),
    "StatsService.GetCampaignStats": Rule(EVERY, "campaign"),
    "StatsService.RebuildCampaignStats": Rule(WRITERS, "campaign"),
    "StatsService.WatchCampaignStats": Rule(EVERY, "campaign"),
    "StatsService.GetWorkspaceStats": Rule(EVERY, "workspace"),
    "StatsService.BatchGetMessageStates": Rule(EVERY, "workspace"),
}


def expected(rpc: str, role: str | None, foreign: bool) -> str:
    rule = TABLE[rpc]
    if role in (None, "unknown"):
        return UNAUTH
    if role not in rule.roles:
        return DENIED
    return NOT_FOUND if foreign else rule.allowed


# --- targets in ws-a, each in the state its RPC legally acts on --------------------------------
class Targets:
    """Fresh ws-a resources for one call (a mutation by one caller never spoils another's)."""

    def __init__(self, cs: ContractStack, admin: Caller, shared: dict[str, str]) -> None:
        self.cs, self.admin, self.shared = cs, admin, shared

    async def campaign(self, state: str) -> str:
        a = self.admin
        mode = cpb.CAMPAIGN_MODE_TRIGGER if state.startswith("trigger") else cpb.CAMPAIGN_MODE_ON_DEMAND
        recipients = [] if mode == cpb.CAMPAIGN_MODE_TRIGGER else [c.Recipient(phone=self.shared["phone"])]
        cp = await a.campaigns.CreateCampaign(cpb.CreateCampaignRequest(
            request_id=f"authz-{time.time_ns()}", draft=state == "draft", recipients=recipients,
            campaign=stack.sms_campaign(f"authz {state}", "Hi {{ first_name }}", SENDER, mode=mode,
                                        auto_start=state.startswith("trigger"))))
        if state in ("approved", "trigger", "trigger_paused"):
            await a.campaigns.ApproveCampaign(cpb.CampaignActionRequest(id=cp.id))
        if state.startswith("trigger"):
            async def sending() -> bool:
                got = await a.campaigns.GetCampaign(cpb.GetCampaignRequest(id=cp.id))
                return bool(got.status == cpb.CAMPAIGN_STATUS_SENDING)
            await stack.wait_for(sending, f"trigger campaign {cp.id} SENDING")
        if state == "trigger_paused":
            await a.campaigns.PauseCampaign(cpb.CampaignActionRequest(id=cp.id))
        if state == "archived":
            await a.campaigns.ArchiveCampaign(cpb.CampaignActionRequest(id=cp.id))
        return str(cp.id)


def _rid() -> str:
    return f"authz-{time.time_ns()}"


Build = Callable[[Targets], Awaitable[Callable[[Caller], Awaitable[Any]]]]


def _act(rpc: str, state: str) -> Build:
    async def build(t: Targets) -> Callable[[Caller], Awaitable[Any]]:
        cid = await t.campaign(state)
        return lambda who: getattr(who.campaigns, rpc)(cpb.CampaignActionRequest(id=cid, request_id=_rid()))
    return build


def _on_done(make: Callable[[str, dict[str, str]], Callable[[Caller], Awaitable[Any]]]) -> Build:
    async def build(t: Targets) -> Callable[[Caller], Awaitable[Any]]:
        return make(t.shared["done"], t.shared)
    return build


def _plain(make: Callable[[Caller], Awaitable[Any]]) -> Build:
    async def build(t: Targets) -> Callable[[Caller], Awaitable[Any]]:
        return make
    return build


async def _drain(stream: Any, limit: int = 1) -> list[Any]:
    out = []
    async for item in stream:
        out.append(item)
        if len(out) >= limit:
            break
    return out


def _unique_name() -> str:
    return f"authz-{time.time_ns()}"


async def _update(t: Targets) -> Callable[[Caller], Awaitable[Any]]:
    cid = await t.campaign("draft")
    return lambda who: who.campaigns.UpdateCampaign(cpb.UpdateCampaignRequest(
        request_id=_rid(), campaign=cpb.Campaign(id=cid, name="renamed"), update_mask={"paths": ["name"]}))


async def _trigger(t: Targets) -> Callable[[Caller], Awaitable[Any]]:
    cid = await t.campaign("trigger")
    return lambda who: who.campaigns.TriggerCampaign(cpb.TriggerCampaignRequest(
        request_id=_rid(), campaign_id=cid, recipient=c.Recipient(phone=t.shared["phone"], first_name="T")))


CALLS: dict[str, Build] = {
    "CampaignService.CreateCampaign": _plain(lambda who: who.campaigns.CreateCampaign(cpb.CreateCampaignRequest(
        request_id=_rid(), draft=True, campaign=stack.sms_campaign(
            "authz create", "Hi", SENDER if who.workspace == stack.WS_A else "BSHOP"),
        recipients=[c.Recipient(phone="+447700900598")]))),
    "CampaignService.GetCampaign": _on_done(lambda cid, s: lambda who: who.campaigns.GetCampaign(
        cpb.GetCampaignRequest(id=cid))),
    "CampaignService.ListCampaigns": _plain(lambda who: who.campaigns.ListCampaigns(cpb.ListCampaignsRequest())),
    "CampaignService.PreviewContent": _on_done(lambda cid, s: lambda who: who.campaigns.PreviewContent(
        cpb.PreviewContentRequest(campaign_id=cid))),
    "CampaignService.SubmitCampaign": _act("SubmitCampaign", "draft"),
    "CampaignService.ApproveCampaign": _act("ApproveCampaign", "new"),
    "CampaignService.RejectCampaign": _act("RejectCampaign", "new"),
    "CampaignService.StartCampaign": _act("StartCampaign", "approved"),
    "CampaignService.PauseCampaign": _act("PauseCampaign", "trigger"),
    "CampaignService.ResumeCampaign": _act("ResumeCampaign", "trigger_paused"),
    "CampaignService.CancelCampaign": _act("CancelCampaign", "new"),
    "CampaignService.UpdateCampaign": _update,
    "CampaignService.ArchiveCampaign": _act("ArchiveCampaign", "new"),
    "CampaignService.RestoreCampaign": _act("RestoreCampaign", "archived"),
    "CampaignService.DeleteCampaign": _act("DeleteCampaign", "draft"),
    "CampaignService.TriggerCampaign": _trigger,
    "CampaignService.GetCampaignKpis": _plain(lambda who: who.campaigns.GetCampaignKpis(cpb.GetCampaignKpisRequest())),
    "CampaignService.ListAuditEvents": _on_done(lambda cid, s: lambda who: who.campaigns.ListAuditEvents(
        cpb.ListAuditEventsRequest(campaign_id=cid))),
    "CampaignService.ListMessages": _on_done(lambda cid, s: lambda who: who.campaigns.ListMessages(
        cpb.ListMessagesRequest(campaign_id=cid))),
    "CampaignService.RetryMessages": _on_done(lambda cid, s: lambda who: who.campaigns.RetryMessages(
        cpb.RetryMessagesRequest(request_id=_rid(), campaign_id=cid))),
    "CampaignService.CreateExport": _on_done(lambda cid, s: lambda who: who.campaigns.CreateExport(
        cpb.CreateExportRequest(request_id=_rid(), campaign_id=cid))),
    "CampaignService.GetExport": _on_done(lambda cid, s: lambda who: who.campaigns.GetExport(
        cpb.GetExportRequest(id=s["export"]))),
    "CampaignService.ListExports": _on_done(lambda cid, s: lambda who: who.campaigns.ListExports(
        cpb.ListExportsRequest(campaign_id=cid))),
    "CampaignService.DownloadExport": _on_done(lambda cid, s: lambda who: _drain(who.campaigns.DownloadExport(
        cpb.GetExportRequest(id=s["export"])), 1000)),
    "CampaignService.ListJobErrors": _on_done(lambda cid, s: lambda who: who.campaigns.ListJobErrors(
        cpb.ListJobErrorsRequest(campaign_id=cid))),
    "CampaignService.ListReplies": _on_done(lambda cid, s: lambda who: who.campaigns.ListReplies(
        cpb.ListRepliesRequest(campaign_id=cid))),
    "CampaignService.ListClicks": _on_done(lambda cid, s: lambda who: who.campaigns.ListClicks(
        cpb.ListClicksRequest(campaign_id=cid))),
    "CampaignService.PromoteVariant": _on_done(lambda cid, s: lambda who: who.campaigns.PromoteVariant(
        cpb.PromoteVariantRequest(request_id=_rid(), campaign_id=cid, variant="A"))),
    "CampaignService.ReconcileCampaign": _on_done(lambda cid, s: lambda who: who.campaigns.ReconcileCampaign(
        cpb.ReconcileCampaignRequest(campaign_id=cid))),
    "RecipientService.UpsertContacts": _plain(lambda who: who.recipients.UpsertContacts(rpb.UpsertContactsRequest(
        request_id=_rid(), contacts=[rpb.Contact(email=f"{_unique_name()}@example.com")]))),
    "RecipientService.ImportContacts": _plain(lambda who: who.recipients.ImportContacts(iter([
        rpb.ImportContactsRequest(options=rpb.ImportContactsOptions(request_id=_rid()),
                                  contacts=[rpb.Contact(email=f"{_unique_name()}@example.com")])]))),
    "RecipientService.GetContact": _on_done(lambda cid, s: lambda who: who.recipients.GetContact(
        rpb.GetContactRequest(id=s["contact"]))),
    "RecipientService.ListContacts": _plain(lambda who: who.recipients.ListContacts(rpb.ListContactsRequest())),
    "RecipientService.CreateCategory": _plain(lambda who: who.recipients.CreateCategory(rpb.CreateCategoryRequest(
        request_id=_rid(), name=_unique_name()))),
    "RecipientService.ListCategories": _plain(lambda who: who.recipients.ListCategories(rpb.ListCategoriesRequest())),
    "RecipientService.ResolveAudience": _plain(lambda who: _drain(who.recipients.ResolveAudience(
        rpb.ResolveAudienceRequest(channel=c.CHANNEL_SMS, inline=[c.Recipient(phone="+447700900597")])))),
    "RecipientService.ResolveAudienceChunks": _plain(lambda who: _drain(who.recipients.ResolveAudienceChunks(
        rpb.ResolveAudienceRequest(channel=c.CHANNEL_SMS, inline=[c.Recipient(phone="+447700900597")])))),
    "RecipientService.AddSuppression": _plain(lambda who: who.recipients.AddSuppression(rpb.AddSuppressionRequest(
        request_id=_rid(), channel=c.CHANNEL_EMAIL, address=f"{_unique_name()}@example.com", reason="asked"))),
    "RecipientService.ListSuppressions": _plain(lambda who: who.recipients.ListSuppressions(
        rpb.ListSuppressionsRequest())),
    "RecipientService.ValidateTargets": _plain(lambda who: who.recipients.ValidateTargets(rpb.ValidateTargetsRequest(
        channel=c.CHANNEL_SMS, inline=[c.Recipient(phone="+447700900597")]))),
    "RecipientService.RegisterSender": _plain(lambda who: who.recipients.RegisterSender(rpb.RegisterSenderRequest(
        request_id=_rid(), channel=c.CHANNEL_SMS, address=f"Z{time.time_ns() % 10**9}"[:11]))),
    "RecipientService.ListSenders": _plain(lambda who: who.recipients.ListSenders(rpb.ListSendersRequest())),
    "RecipientService.DeleteSender": None,  # type: ignore[dict-item]  # set below (registers first)
    "StatsService.RebuildCampaignStats": _on_done(lambda cid, s: lambda who: who.stats.RebuildCampaignStats(
        spb.RebuildCampaignStatsRequest(campaign_id=cid))),
    "StatsService.GetCampaignStats": _on_done(lambda cid, s: lambda who: who.stats.GetCampaignStats(
        spb.GetCampaignStatsRequest(campaign_id=cid))),
    "StatsService.WatchCampaignStats": _on_done(lambda cid, s: lambda who: _drain(who.stats.WatchCampaignStats(
        spb.WatchCampaignStatsRequest(campaign_id=cid, interval_ms=100)))),
    "StatsService.GetWorkspaceStats": _plain(lambda who: who.stats.GetWorkspaceStats(spb.GetWorkspaceStatsRequest())),
    "StatsService.BatchGetMessageStates": _on_done(lambda cid, s: lambda who: who.stats.BatchGetMessageStates(
        spb.BatchGetMessageStatesRequest(message_ids=[s["message"]]))),
}


async def _delete_sender(t: Targets) -> Callable[[Caller], Awaitable[Any]]:
    async def call(who: Caller) -> Any:
        # The caller's own workspace registers a sender (as its admin), then the caller deletes it.
        address = f"D{time.time_ns() % 10**9}"[:11]
        owner = t.cs.caller(who.workspace, "admin", pii=True)
        await owner.recipients.RegisterSender(rpb.RegisterSenderRequest(
            request_id=_rid(), channel=c.CHANNEL_SMS, address=address))
        return await who.recipients.DeleteSender(rpb.DeleteSenderRequest(
            request_id=_rid(), channel=c.CHANNEL_SMS, address=address))
    return call


CALLS["RecipientService.DeleteSender"] = _delete_sender


async def _category(t: Targets) -> str:
    return await stack.create_category(t.admin, "authz")


async def _rename_category(t: Targets) -> Callable[[Caller], Awaitable[Any]]:
    cat = await _category(t)
    return lambda who: who.recipients.UpdateCategory(rpb.UpdateCategoryRequest(
        request_id=_rid(), category=rpb.Category(id=cat, name=_unique_name())))


async def _delete_category(t: Targets) -> Callable[[Caller], Awaitable[Any]]:
    cat = await _category(t)
    return lambda who: who.recipients.DeleteCategory(rpb.DeleteCategoryRequest(request_id=_rid(), id=cat))


async def _remove_suppression(t: Targets) -> Callable[[Caller], Awaitable[Any]]:
    # A ws-a entry added by hand, named by its id.
    entry = await t.admin.recipients.AddSuppression(rpb.AddSuppressionRequest(
        request_id=_rid(), channel=c.CHANNEL_EMAIL, address=f"{_unique_name()}@example.com", reason="asked"))
    return lambda who: who.recipients.RemoveSuppression(rpb.RemoveSuppressionRequest(
        request_id=_rid(), id=entry.id, reason="authz"))


CALLS["RecipientService.UpdateCategory"] = _rename_category
CALLS["RecipientService.DeleteCategory"] = _delete_category
CALLS["RecipientService.RemoveSuppression"] = _remove_suppression


@pytest.fixture(scope="module")
async def contract_authz_shared(contract_stack: ContractStack, contract_admin_a: Caller) -> dict[str, str]:
    """A DONE ws-a campaign (one delivered message), its finished export and a contact."""
    a = contract_admin_a
    phone = contract_stack.phones(1)[0]
    done = await stack.run_campaign(a, a, stack.sms_campaign("authz done", "Hello", SENDER), [c.Recipient(phone=phone)])
    msgs = await stack.all_messages(a, done.id)
    export = await stack.finished_export(a, done.id)
    contact = await stack.upsert_contacts(a, [rpb.Contact(phone=phone, external_id=f"authz-{time.time_ns()}")])
    return {"done": done.id, "message": msgs[0].id, "export": export.id, "contact": contact[0], "phone": phone}


def test_the_table_covers_every_rpc_of_the_contract() -> None:
    names = {f"{s.name}.{m.name}" for f in (cpb.DESCRIPTOR, rpb.DESCRIPTOR, spb.DESCRIPTOR)
             for s in f.services_by_name.values() for m in s.methods}
    assert names == set(TABLE) == set(CALLS)


CASES = [(rpc, role, foreign) for rpc in TABLE for role in CALLERS
         for foreign in ((False, True) if TABLE[rpc].target != "workspace" else (False,))]


@pytest.mark.parametrize(("rpc", "role", "foreign"), CASES,
                         ids=[f"{r}-{role or 'none'}-{'foreign' if f else 'own'}" for r, role, f in CASES])
async def test_authorisation_matrix(contract_stack: ContractStack, contract_admin_a: Caller,
                                    contract_authz_shared: dict[str, str], rpc: str, role: str | None,
                                    foreign: bool) -> None:
    call = await CALLS[rpc](Targets(contract_stack, contract_admin_a, contract_authz_shared))
    who = contract_stack.caller(stack.WS_B if foreign else stack.WS_A, role)
    want = expected(rpc, role, foreign)
    try:
        await call(who)
        got = OK
    except grpc.aio.AioRpcError as err:
        got = err.code().name
        detail = err.details()
    else:
        detail = ""
    assert got == want, f"{rpc} as {who.label} ({'foreign' if foreign else 'own'} target): {got} {detail}"


# --- masking -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
async def contract_masking(contract_stack: ContractStack, contract_admin_a: Caller) -> dict[str, Any]:
    """ws-a data carrying full numbers in every field that can hold one, read by a pii and a
    non-pii viewer."""
    a = contract_admin_a
    good, replier, edited = contract_stack.phones(3)
    bad = contract_stack.failing_phones(1)[0]
    done = await stack.run_campaign(a, a, stack.sms_campaign("masking", "Hi there", SENDER),
                                    [c.Recipient(phone=good), c.Recipient(phone=replier)])
    assert await contract_stack.sim.inject_mo(replier.lstrip("+"), SENDER, "yes")

    async def replied() -> bool:
        got = await a.campaigns.ListReplies(cpb.ListRepliesRequest(campaign_id=done.id))
        return bool(got.replies)
    await stack.wait_for(replied, "the reply")
    csv = await stack.finished_export(a, done.id, cpb.EXPORT_FORMAT_CSV)
    txt = await stack.finished_export(a, done.id, cpb.EXPORT_FORMAT_TXT)
    # A draft whose recipients are edited: the audit's before/after carry the numbers.
    draft = await a.campaigns.CreateCampaign(cpb.CreateCampaignRequest(
        request_id=f"mask-{time.time_ns()}", draft=True, recipients=[c.Recipient(phone=edited)],
        campaign=stack.sms_campaign("masking draft", f"Call {edited}", SENDER)))
    await a.campaigns.UpdateCampaign(cpb.UpdateCampaignRequest(
        request_id=f"mask-{time.time_ns()}", campaign=cpb.Campaign(
            id=draft.id, content=cpb.Content(text=f"Call {good} or {edited}")), update_mask={"paths": ["content"]}))
    contact = await stack.upsert_contacts(a, [rpb.Contact(phone=good, external_id=f"mask-{time.time_ns()}")])
    # A trigger campaign: a trigger answered by a pii caller, replayed to a non-pii one.
    trig = await stack.create_and_approve(a, a, stack.sms_campaign(
        "masking trigger", "Hi {{ first_name }}", SENDER, mode=cpb.CAMPAIGN_MODE_TRIGGER))

    async def sending() -> bool:
        got = await a.campaigns.GetCampaign(cpb.GetCampaignRequest(id=trig.id))
        return bool(got.status == cpb.CAMPAIGN_STATUS_SENDING)
    await stack.wait_for(sending, "trigger campaign SENDING")
    trigger_req = cpb.TriggerCampaignRequest(request_id=f"mask-trigger-{time.time_ns()}", campaign_id=trig.id,
                                             recipient=c.Recipient(phone=replier, first_name="Tia"))
    await a.campaigns.TriggerCampaign(trigger_req)
    # A message the SMSC refused, whose number then opted out: retrying excludes it, and the
    # exclusion's reason names the address.
    failing = await stack.run_campaign(a, a, stack.sms_campaign("masking retry", "Hi", SENDER),
                                       [c.Recipient(phone=good), c.Recipient(phone=bad)])
    await a.recipients.AddSuppression(rpb.AddSuppressionRequest(
        request_id=f"mask-{time.time_ns()}", channel=c.CHANNEL_SMS, address=bad, reason="STOP"))
    return {"done": done.id, "csv": csv.id, "txt": txt.id, "draft": draft.id, "contact": contact[0],
            "trigger": trigger_req, "failing": failing.id, "numbers": [good, replier, edited, bad]}


async def _text(read: Callable[[], Awaitable[str]]) -> str:
    """A field's text, or "<CODE>" when the read failed (so one broken RPC does not hide
    what the others leak)."""
    try:
        return await read()
    except grpc.aio.AioRpcError as err:
        return f"<{err.code().name}: {err.details()}>"


async def _exposed(cs: ContractStack, who: Caller, m: dict[str, Any]) -> dict[str, str]:
    """What a caller reads in every phone-carrying field, as text per field."""
    msgs = await stack.all_messages(who, m["done"]) + await stack.all_messages(who, m["failing"])

    async def replies() -> str:
        got = await who.campaigns.ListReplies(cpb.ListRepliesRequest(campaign_id=m["done"]))
        return " ".join(getattr(r, "from") for r in got.replies)

    async def contact() -> str:
        return str((await who.recipients.GetContact(rpb.GetContactRequest(id=m["contact"]))).phone)

    async def audit() -> str:
        got = await who.campaigns.ListAuditEvents(cpb.ListAuditEventsRequest(campaign_id=m["draft"]))
        return " ".join(f"{dict(e.before)} {dict(e.after)}" for e in got.events)

    async def preview() -> str:
        got = await who.campaigns.PreviewContent(cpb.PreviewContentRequest(
            content=cpb.Content(text="Your number is {{ phone }}"), channel=c.CHANNEL_SMS, contact_id=m["contact"]))
        return str(got.text)

    async def export(key: str) -> str:
        return (await stack.download_export(who, m[key])).decode()

    async def retry() -> str:
        got = await who.campaigns.RetryMessages(cpb.RetryMessagesRequest(
            request_id=f"mask-retry-{who.label}-{time.time_ns()}", campaign_id=m["failing"]))
        return " ".join(x.reason for x in got.excluded)

    async def replay() -> str:
        return str(await who.campaigns.TriggerCampaign(m["trigger"]))

    out = {
        "Message.phone": " ".join(x.phone for x in msgs),
        "Message.error_description": " ".join(x.error_description for x in msgs),
        "Reply.from": await _text(replies),
        "Contact.phone": await _text(contact),
        "AuditEvent.before/after": await _text(audit),
        "PreviewContent": await _text(preview),
        "export CSV": await _text(lambda: export("csv")),
        "export TXT": await _text(lambda: export("txt")),
    }
    if who.role == "operator":  # mutating reads: retry (exclusions) and a trigger replay
        out["RetryExclusion.reason"] = await _text(retry)
        out["TriggerCampaign replay"] = await _text(replay)
    return out


@pytest.mark.parametrize("role", ["viewer", "operator"])
async def test_full_numbers_only_for_pii_callers(contract_stack: ContractStack, contract_masking: dict[str, Any],
                                                 role: str) -> None:
    numbers = contract_masking["numbers"]
    plain = await _exposed(contract_stack, contract_stack.caller(stack.WS_A, role, pii=False), contract_masking)
    leaks = {f: [n for n in numbers if n in text or n.lstrip("+") in text] for f, text in plain.items()}
    assert {f: n for f, n in leaks.items() if n} == {}, plain
    with_pii = await _exposed(contract_stack, contract_stack.caller(stack.WS_A, role, pii=True), contract_masking)
    # The pii caller sees the numbers where they are (proves the fields above held them).
    fields = ["Message.phone", "Reply.from", "Contact.phone", "PreviewContent", "export CSV", "export TXT",
              "AuditEvent.before/after"]
    if role == "operator":
        fields += ["RetryExclusion.reason", "TriggerCampaign replay"]
    for f in fields:
        assert any(n in with_pii[f] for n in numbers), (f, with_pii[f])
