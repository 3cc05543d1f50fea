"""Personalisation, end to end: templates render per recipient from the contact's fields and
what reaches the SMSC / the mailbox is the rendered text; broken templates are refused at
create with INVALID_ARGUMENT naming the field and the line; previews use the same engine;
the `make run` demo's messages greet their readers by name."""

from __future__ import annotations

import time

import grpc
import pytest
from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2 as rpb

from cli import demo
from shared.errors import field_violations
from tests.contract import stack
from tests.contract.stack import Caller, ContractStack

TEMPLATE = "Hi {{ first_name }}, your code is {{ code }}."
SENDER = "HERALD"  # ws-a's SMS sender in the contract suite
MAIL_SENDER = "Contract News <news@contract-a.example.com>"


@pytest.fixture(scope="module")
async def people(contract_stack: ContractStack, contract_admin_a: Caller) -> dict[str, tuple[str, str]]:
    """Two contacts of ws-a in one category, with first_name and the custom field `code`:
    name -> (contact id, phone). The category id is under the key "category"."""
    cat = await stack.create_category(contract_admin_a, "personalised")
    phones = contract_stack.phones(2)
    ids = await stack.upsert_contacts(contract_admin_a, [
        rpb.Contact(phone=phones[0], first_name="Ada", last_name="Lovelace", fields={"code": "4821"},
                    external_id=f"ada-{time.time_ns()}", category_ids=[cat]),
        rpb.Contact(phone=phones[1], first_name="Grace", last_name="Hopper", fields={"code": "7305"},
                    external_id=f"grace-{time.time_ns()}", category_ids=[cat]),
    ])
    return {"Ada": (ids[0], phones[0]), "Grace": (ids[1], phones[1]), "category": (cat, "")}


async def test_sms_reaches_the_smsc_rendered_per_contact(
        contract_stack: ContractStack, contract_admin_a: Caller, people: dict[str, tuple[str, str]]) -> None:
    done = await stack.run_campaign(contract_admin_a, contract_admin_a, stack.sms_campaign(
        "personalised sms", TEMPLATE, SENDER, category_ids=[people["category"][0]]))
    assert done.progress.total == 2
    for name, code in (("Ada", "4821"), ("Grace", "7305")):
        phone = people[name][1]
        texts = [s.text for s in contract_stack.submits_to(phone)]
        assert texts == [f"Hi {name}, your code is {code}."], (name, texts)
    # The ledger's preview is the rendered text too, never the template.
    msgs = await stack.all_messages(contract_admin_a, done.id)
    previews = sorted(m.content_preview for m in msgs)
    assert previews == ["Hi Ada, your code is 4821.", "Hi Grace, your code is 7305."]


@pytest.mark.parametrize(("text", "line"), [
    ("Hi {{ first_name }, your code is {{ code }}.", 1),      # unclosed expression
    ("Hello,\n{% if first_name %}Hi {{ first_name }}.\n", 2),  # {% if %} never closed
    ("Hi {{ first_name }},\nyour voucher is {{ voucher_code }}.", 2),  # unknown variable
])
async def test_broken_templates_are_refused_at_create_naming_field_and_line(
        contract_admin_a: Caller, people: dict[str, tuple[str, str]], text: str, line: int) -> None:
    name = f"broken template {time.time_ns()}"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await contract_admin_a.campaigns.CreateCampaign(cpb.CreateCampaignRequest(
            request_id=f"broken-{time.time_ns()}",
            campaign=stack.sms_campaign(name, text, SENDER, category_ids=[people["category"][0]])))
    err = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    violations = field_violations(err)
    assert "campaign.content.text" in violations, violations
    assert f"line {line}" in violations["campaign.content.text"], violations
    # Refused before anything was stored.
    listed = await contract_admin_a.campaigns.ListCampaigns(cpb.ListCampaignsRequest(
        show_all=True, page_size=1000))
    assert name not in [cp.name for cp in listed.campaigns]


async def test_email_subject_html_and_text_arrive_rendered(
        contract_stack: ContractStack, contract_admin_a: Caller) -> None:
    cat = await stack.create_category(contract_admin_a, "personalised-mail")
    stamp = time.time_ns()
    address = f"ada.{stamp}@example.com"
    await stack.upsert_contacts(contract_admin_a, [rpb.Contact(
        email=address, first_name="Ada", external_id=f"ada-mail-{stamp}", category_ids=[cat])])
    done = await stack.run_campaign(contract_admin_a, contract_admin_a, cpb.Campaign(
        name="personalised mail", channel=c.CHANNEL_EMAIL, sender=MAIL_SENDER, category_ids=[cat],
        content=cpb.Content(subject="News for {{ first_name }}",
                            html="<html><body><p>Hello {{ first_name }}, welcome.</p></body></html>",
                            text="Hello {{ first_name }}, welcome.")))
    mails = await stack.wait_for(lambda: _async(contract_stack.mails_to(address)), f"mail to {address}")
    assert len(mails) == 1
    mail = mails[0]
    assert str(mail["Subject"]) == "News for Ada"
    assert "Hello Ada, welcome." in stack.mail_text(mail, "html")
    assert "Hello Ada, welcome." in stack.mail_text(mail, "plain")
    assert "{{" not in mail.as_string()
    msgs = await stack.all_messages(contract_admin_a, done.id)
    assert [m.content_preview for m in msgs] == ["News for Ada"]


async def _async(value: object) -> object:
    return value


async def test_preview_renders_for_a_contact(
        contract_admin_a: Caller, people: dict[str, tuple[str, str]]) -> None:
    ada = people["Ada"][0]
    got = await contract_admin_a.campaigns.PreviewContent(cpb.PreviewContentRequest(
        content=cpb.Content(text=TEMPLATE), channel=c.CHANNEL_SMS, contact_id=ada))
    assert got.text == "Hi Ada, your code is 4821."
    assert (got.sms_encoding, got.sms_parts, got.characters) == ("GSM-7", 1, len(got.text))
    assert {"first_name", "code"} <= set(got.variables)
    # A stored campaign's content, rendered for a contact, is what its send would say.
    draft = await contract_admin_a.campaigns.CreateCampaign(cpb.CreateCampaignRequest(
        request_id=f"preview-{time.time_ns()}", draft=True,
        campaign=stack.sms_campaign("preview draft", TEMPLATE, SENDER, category_ids=[people["category"][0]])))
    grace = people["Grace"][0]
    got = await contract_admin_a.campaigns.PreviewContent(cpb.PreviewContentRequest(
        campaign_id=draft.id, contact_id=grace))
    assert got.text == "Hi Grace, your code is 7305."


async def test_make_run_demo_greets_its_readers_by_name(contract_stack: ContractStack) -> None:
    md = stack.metadata(stack.WS_A, "admin", pii=True)
    cl = demo.Clients.connect(contract_stack.stack.addr("campaigns"), contract_stack.stack.addr("recipients"),
                              contract_stack.stack.addr("stats"))
    try:
        sms_id = await demo.sms_campaign(cl, 3, md=md)
        email_id = await demo.email_campaign(cl, 3, md=md)
        for cid in (sms_id, email_id):
            done = await demo.wait_terminal(cl, cid, timeout=90, md=md)
            assert done.status == cpb.CAMPAIGN_STATUS_DONE, (cid, done.status_reason)
    finally:
        await cl.close()
    for i in range(3):
        texts = [s.text for s in contract_stack.submits_to(f"+447700900{i:03d}")]
        assert f"Hi Demo{i}, your code is 1234." in texts, texts
        address = f"reader{i:04d}@example.com"
        mails = await stack.wait_for(lambda a=address: _async(contract_stack.mails_to(a)), f"mail to {address}")
        subjects = [str(m["Subject"]) for m in mails]
        assert f"Autumn offers for Reader{i}" in subjects, subjects
        for m in mails:
            assert str(m["Subject"]) != "Autumn offers for "
            assert "Hello !" not in stack.mail_text(m, "html")
            assert f"Hello Reader{i}, see" in stack.mail_text(m, "plain")
