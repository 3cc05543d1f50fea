"""Operators' housekeeping of the recipients data, over gRPC and the `herald` CLI against the
full stack: taking an address off the suppression list, renaming and deleting a category.

- A STOP is taken off the list only by an admin with a reason; the next campaign reaches the
  number again, while the campaign built during the opt-out keeps its OPTED_OUT message.
- An entry is named by address (normalised as AddSuppression does) or by id (for callers who
  see masked numbers); a retry with the same request_id answers the first result, a second
  removal without it is NOT_FOUND.
- A rename keeps the category's id and contacts; a duplicate name is ALREADY_EXISTS.
- A deleted category's contacts stay (in their other categories), a campaign built from it
  keeps its messages.
- Another workspace can neither remove, rename nor delete: NOT_FOUND, and nothing changes.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2 as rpb

from shared.errors import field_violations
from tests.contract import stack
from tests.contract.stack import Caller, ContractStack

SENDER = "HERALD"  # ws-a's sender
REPO = Path(__file__).resolve().parents[2]


def _rid(tag: str) -> str:
    return f"admin-{tag}-{time.time_ns()}"


async def _refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def _suppressions(caller: Caller) -> list[rpb.Suppression]:
    got = await caller.recipients.ListSuppressions(rpb.ListSuppressionsRequest(page_size=1000))
    return list(got.suppressions)


async def _accepted(caller: Caller, channel: int, recipient: c.Recipient) -> bool:
    members = [m async for m in caller.recipients.ResolveAudience(rpb.ResolveAudienceRequest(
        channel=channel, inline=[recipient]))]
    return bool(members[0].accepted)


async def test_a_stop_is_removed_only_by_an_admin_with_a_reason_then_the_number_is_reached(
        contract_stack: ContractStack, contract_admin_a: Caller) -> None:
    admin = contract_admin_a
    operator = contract_stack.caller(stack.WS_A, "operator", pii=True)
    phone = contract_stack.phones(1)[0]
    to = [c.Recipient(phone=phone)]
    await stack.run_campaign(admin, admin, stack.sms_campaign("before STOP", "Hello", SENDER), to)
    assert await contract_stack.sim.inject_mo(phone.lstrip("+"), SENDER, "STOP")

    async def stopped() -> list[rpb.Suppression]:
        return [s for s in await _suppressions(admin) if s.address == phone]
    (entry,) = await stack.wait_for(stopped, "the STOP on the suppression list")
    assert entry.kind == rpb.SUPPRESSION_KIND_OPTED_OUT and entry.id

    # Built while the number opted out: its message is OPTED_OUT and nothing is sent.
    during = await stack.create_and_approve(admin, admin, stack.sms_campaign("during STOP", "Hi", SENDER), to)
    await stack.wait_terminal(admin, during.id)
    assert [m.status for m in await stack.all_messages(admin, during.id)] == [c.MESSAGE_STATUS_OPTED_OUT]

    spaced = f"{phone[:3]} {phone[3:7]} {phone[7:]}"  # "+44 7700 900xxx": normalised like AddSuppression
    remove = rpb.RemoveSuppressionRequest(channel=c.CHANNEL_SMS, address=spaced)
    err = await _refused(operator.recipients.RemoveSuppression(remove))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED, err.details()
    err = await _refused(admin.recipients.RemoveSuppression(remove))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "reason" in field_violations(err), field_violations(err)
    assert [s.id for s in await stopped()] == [entry.id], "a refused removal changed nothing"

    remove.reason = "re-subscribed by phone"
    removed = await admin.recipients.RemoveSuppression(remove)
    assert (removed.id, removed.address, removed.kind) == (entry.id, phone, rpb.SUPPRESSION_KIND_OPTED_OUT)
    assert await stopped() == []
    assert await _accepted(admin, c.CHANNEL_SMS, to[0])

    await stack.run_campaign(admin, admin, stack.sms_campaign("after removal", "Welcome back", SENDER), to)
    assert [s.text for s in contract_stack.submits_to(phone)] == ["Hello", "Welcome back"]
    assert [m.status for m in await stack.all_messages(admin, during.id)] == [c.MESSAGE_STATUS_OPTED_OUT]


async def test_removal_by_id_with_a_request_id_is_retried_safely(contract_stack: ContractStack,
                                                                 contract_admin_a: Caller) -> None:
    admin = contract_admin_a
    operator = contract_stack.caller(stack.WS_A, "operator", pii=False)
    phone = contract_stack.phones(1)[0]
    await admin.recipients.AddSuppression(rpb.AddSuppressionRequest(
        request_id=_rid("add"), channel=c.CHANNEL_SMS, address=phone, reason="asked by email"))
    # The operator sees the number masked, and names the entry by its id.
    (seen,) = [s for s in await _suppressions(operator) if s.address.endswith(phone[-3:])
               and s.kind == rpb.SUPPRESSION_KIND_MANUAL and s.reason == "asked by email"]
    assert phone not in seen.address

    req = rpb.RemoveSuppressionRequest(request_id=_rid("remove"), id=seen.id, reason="typo")
    first = await operator.recipients.RemoveSuppression(req)
    assert (first.id, first.address, first.kind) == (seen.id, seen.address, rpb.SUPPRESSION_KIND_MANUAL)
    assert await operator.recipients.RemoveSuppression(req) == first  # the retry: the first answer
    assert await _accepted(admin, c.CHANNEL_SMS, c.Recipient(phone=phone))

    other = rpb.RemoveSuppressionRequest(request_id=req.request_id, id=seen.id, reason="another")
    err = await _refused(operator.recipients.RemoveSuppression(other))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "request_id" in field_violations(err)
    err = await _refused(operator.recipients.RemoveSuppression(rpb.RemoveSuppressionRequest(id=seen.id)))
    assert err.code() == grpc.StatusCode.NOT_FOUND, err.details()

    for bad, field in ((rpb.RemoveSuppressionRequest(id="not-an-id"), "id"),
                       (rpb.RemoveSuppressionRequest(id=seen.id, address=phone), "id"),
                       (rpb.RemoveSuppressionRequest(), "address"),
                       (rpb.RemoveSuppressionRequest(address=phone), "channel"),
                       (rpb.RemoveSuppressionRequest(channel=c.CHANNEL_EMAIL, address="no-at-sign"), "address"),
                       (rpb.RemoveSuppressionRequest(id=seen.id, reason="x" * 501), "reason")):
        err = await _refused(operator.recipients.RemoveSuppression(bad))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (bad, err.details())
        assert field in field_violations(err), (bad, field_violations(err))


async def test_another_workspace_cannot_remove_rename_or_delete(contract_admin_a: Caller,
                                                                contract_admin_b: Caller) -> None:
    a, b = contract_admin_a, contract_admin_b
    address = f"both-{time.time_ns()}@example.com"
    for who in (a, b):
        await who.recipients.AddSuppression(rpb.AddSuppressionRequest(
            request_id=_rid("add"), channel=c.CHANNEL_EMAIL, address=address, reason="asked"))
    (entry_a,) = [s for s in await _suppressions(a) if s.address == address]
    cat_a = await stack.create_category(a, "isolated")

    for call in (b.recipients.RemoveSuppression(rpb.RemoveSuppressionRequest(id=entry_a.id, reason="x")),
                 b.recipients.UpdateCategory(rpb.UpdateCategoryRequest(
                     category=rpb.Category(id=cat_a, name=f"stolen-{time.time_ns()}"))),
                 b.recipients.DeleteCategory(rpb.DeleteCategoryRequest(id=cat_a))):
        err = await _refused(call)
        assert err.code() == grpc.StatusCode.NOT_FOUND, err.details()
    # B removes its own entry for the same address: A's stays, and still holds A's sends back.
    await b.recipients.RemoveSuppression(rpb.RemoveSuppressionRequest(
        channel=c.CHANNEL_EMAIL, address=address.replace("example.com", "Example.COM"), reason="x"))
    assert [s for s in await _suppressions(b) if s.address == address] == []
    assert [s.id for s in await _suppressions(a) if s.address == address] == [entry_a.id]
    assert not await _accepted(a, c.CHANNEL_EMAIL, c.Recipient(email=address))
    assert cat_a in {x.id for x in (await a.recipients.ListCategories(
        rpb.ListCategoriesRequest(page_size=1000))).categories}


async def test_a_renamed_category_keeps_its_id_and_contacts(contract_stack: ContractStack,
                                                            contract_admin_a: Caller) -> None:
    operator = contract_stack.caller(stack.WS_A, "operator", pii=True)
    cat = await stack.create_category(operator, "to-rename")
    taken = await operator.recipients.CreateCategory(rpb.CreateCategoryRequest(name=f"taken-{time.time_ns()}"))
    await stack.upsert_contacts(operator, [rpb.Contact(
        email=f"renamed-{time.time_ns()}@example.com", category_ids=[cat])])

    new_name = f"renamed-{time.time_ns()}"
    req = rpb.UpdateCategoryRequest(request_id=_rid("rename"), category=rpb.Category(id=cat, name=f"  {new_name} "),
                                    update_mask={"paths": ["name"]})
    renamed = await operator.recipients.UpdateCategory(req)
    assert (renamed.id, renamed.name, renamed.contacts_count) == (cat, new_name, 1)
    listed = {x.id: (x.name, x.contacts_count) for x in (await operator.recipients.ListCategories(
        rpb.ListCategoriesRequest(page_size=1000))).categories}
    assert listed[cat] == (new_name, 1)
    assert await operator.recipients.UpdateCategory(req) == renamed  # retried: the first answer

    err = await _refused(operator.recipients.UpdateCategory(rpb.UpdateCategoryRequest(
        category=rpb.Category(id=cat, name=taken.name))))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS, err.details()
    for bad, field in ((rpb.Category(id=cat, name="  "), "category.name"),
                       (rpb.Category(id=cat, name="x" * 201), "category.name"),
                       (rpb.Category(id="nope", name="fine"), "category.id"),
                       (rpb.Category(name="fine"), "category.id")):
        err = await _refused(operator.recipients.UpdateCategory(rpb.UpdateCategoryRequest(category=bad)))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (bad, err.details())
        assert field in field_violations(err), (bad, field_violations(err))
    err = await _refused(operator.recipients.UpdateCategory(rpb.UpdateCategoryRequest(
        category=rpb.Category(id=cat, name="fine"), update_mask={"paths": ["workspace_id"]})))
    assert "update_mask" in field_violations(err), field_violations(err)
    same = await operator.recipients.UpdateCategory(rpb.UpdateCategoryRequest(
        category=rpb.Category(id=cat, name=new_name)))  # to its own name: unchanged, not a duplicate
    assert (same.id, same.name, same.contacts_count) == (cat, new_name, 1)  # refusals renamed nothing
    viewer = contract_stack.caller(stack.WS_A, "viewer")
    err = await _refused(viewer.recipients.UpdateCategory(rpb.UpdateCategoryRequest(
        category=rpb.Category(id=cat, name="by a viewer"))))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_deleted_category_leaves_its_contacts_and_built_campaigns(
        contract_stack: ContractStack, contract_admin_a: Caller) -> None:
    a = contract_admin_a
    doomed, kept = await stack.create_category(a, "doomed"), await stack.create_category(a, "kept")
    phones = contract_stack.phones(2)
    ids = await stack.upsert_contacts(a, [
        rpb.Contact(phone=phones[0], external_id=f"del-{time.time_ns()}-0", category_ids=[doomed, kept]),
        rpb.Contact(phone=phones[1], external_id=f"del-{time.time_ns()}-1", category_ids=[doomed])])
    built = await stack.run_campaign(a, a, stack.sms_campaign("from doomed", "Hi", SENDER, category_ids=[doomed]))

    req = rpb.DeleteCategoryRequest(request_id=_rid("delete"), id=doomed)
    deleted = await a.recipients.DeleteCategory(req)
    assert (deleted.id, deleted.contacts_count) == (doomed, 2)
    assert await a.recipients.DeleteCategory(req) == deleted  # retried: the first answer
    err = await _refused(a.recipients.DeleteCategory(rpb.DeleteCategoryRequest(id=doomed)))
    assert err.code() == grpc.StatusCode.NOT_FOUND

    first, second = [await a.recipients.GetContact(rpb.GetContactRequest(id=i)) for i in ids]
    assert (list(first.category_ids), list(second.category_ids)) == ([kept], [])
    assert (first.phone, second.phone) == tuple(phones)
    cats = {x.id for x in (await a.recipients.ListCategories(rpb.ListCategoriesRequest(page_size=1000))).categories}
    assert doomed not in cats and kept in cats
    # The built campaign's audience lives in its ledger: unchanged.
    assert sorted(m.phone for m in await stack.all_messages(a, built.id)) == sorted(phones)
    # A new audience naming the category is refused, naming it.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        _ = [m async for m in a.recipients.ResolveAudience(rpb.ResolveAudienceRequest(
            channel=c.CHANNEL_SMS, category_ids=[doomed]))]
    assert "category_ids[0]" in field_violations(info.value), info.value.details()
    err = await _refused(a.recipients.DeleteCategory(rpb.DeleteCategoryRequest(id="x")))
    assert "id" in field_violations(err)


# --- the CLI ---------------------------------------------------------------------------------
async def _herald(cs: ContractStack, home: Path, *args: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env.update(HOME=str(home), HERALD_RECIPIENTS_ADDR=cs.stack.addr("recipients"),
               HERALD_CAMPAIGNS_ADDR=cs.stack.addr("campaigns"), HERALD_STATS_ADDR=cs.stack.addr("stats"),
               HERALD_TOKEN=stack.token(stack.WS_A, "admin", pii=True))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli.main", *args, cwd=REPO, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_cli_renames_deletes_categories_and_removes_suppressions(
        contract_stack: ContractStack, contract_admin_a: Caller, tmp_path: Path) -> None:
    a = contract_admin_a
    cat = await stack.create_category(a, "cli")
    name = f"cli-renamed-{time.time_ns()}"
    rc, out, err = await _herald(contract_stack, tmp_path, "categories", "rename", cat, name, "--json")
    assert rc == 0, err
    assert (json.loads(out)["id"], json.loads(out)["name"]) == (cat, name)
    rc, out, err = await _herald(contract_stack, tmp_path, "categories", "delete", name, "--json")
    assert rc == 0, err
    assert json.loads(out)["id"] == cat
    rc, out, err = await _herald(contract_stack, tmp_path, "categories", "delete", cat)
    assert rc == 1 and "NOT_FOUND" in out, (out, err)

    by_address, by_id = (f"cli-{i}-{time.time_ns()}@example.com" for i in range(2))
    for address in (by_address, by_id):
        await a.recipients.AddSuppression(rpb.AddSuppressionRequest(
            request_id=_rid("cli"), channel=c.CHANNEL_EMAIL, address=address, reason="asked"))
    rc, out, err = await _herald(contract_stack, tmp_path, "suppressions", "remove", by_address,
                                 "--reason", "wrong list", "--json")
    assert rc == 0, err
    assert (json.loads(out)["address"], json.loads(out)["kind"]) == (by_address, "SUPPRESSION_KIND_MANUAL")
    (entry,) = [s for s in await _suppressions(a) if s.address == by_id]
    rc, out, err = await _herald(contract_stack, tmp_path, "suppressions", "remove", "--id", entry.id)
    assert rc == 0, err
    assert f"removed {by_id} (EMAIL, MANUAL)" in out
    assert not {by_address, by_id} & {s.address for s in await _suppressions(a)}
    rc, out, err = await _herald(contract_stack, tmp_path, "suppressions", "remove", "--id", entry.id, "--json")
    assert rc == 1 and "NOT_FOUND" in err, (out, err)
