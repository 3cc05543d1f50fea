"""Senders, ValidateTargets, contact language and the API boundary of RecipientService over a
real gRPC server (bearer tokens from a tokens file), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2 as pb
from herald.v1 import recipients_pb2_grpc as pb_grpc

from services.recipients.servicer import RecipientServicer
from services.recipients.store import Store
from shared import db
from shared.errors import field_violations
from shared.grpc_server import ServiceRuntime

MIGRATIONS = os.path.join(os.path.dirname(__file__), "../../services/recipients/migrations")
RUN = uuid.uuid4().hex[:8]  # the databases outlive a module: fresh workspaces per run
WS_A, WS_B = f"ws-a-{RUN}", f"ws-b-{RUN}"
TOKENS = {
    "admin-a": {"name": "admin-a", "workspace": WS_A, "roles": ["admin"], "pii": True},
    "op-a": {"name": "op-a", "workspace": WS_A, "roles": ["operator"], "pii": False},
    "viewer-a": {"name": "viewer-a", "workspace": WS_A, "roles": ["viewer"]},
    "admin-b": {"name": "admin-b", "workspace": WS_B, "roles": ["admin"], "pii": True},
    "svc": {"name": "campaigns", "workspace": "none", "roles": ["service"]},
}


def as_(token: str, workspace: str = "") -> tuple:
    md: tuple = (("authorization", f"Bearer {token}"),)
    return md + ((("x-herald-workspace", workspace),) if workspace else ())


A, OP_A, VIEW_A, B = as_("admin-a"), as_("op-a"), as_("viewer-a"), as_("admin-b")


def sender_name() -> str:
    """A fresh alphanumeric source address (senders are global across workspaces)."""
    return "S" + uuid.uuid4().hex[:9].upper()


@pytest.fixture(params=["sqlite", "postgresql"], scope="module")
async def stub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               pg_url: str) -> AsyncIterator[pb_grpc.RecipientServiceStub]:
    work: Path = tmp_path_factory.mktemp("rtargets")
    url = f"sqlite+aiosqlite:///{work / 'recipients.db'}" if request.param == "sqlite" else pg_url
    await db.migrate(MIGRATIONS, url)
    engine = db.make_engine(url)
    tokens = work / "tokens.json"
    tokens.write_text(json.dumps(TOKENS))
    rt = ServiceRuntime("recipients-targets-test")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HERALD_TOKENS_FILE", str(tokens))  # read once, when the server starts
        port = await rt.start_grpc([(pb_grpc.add_RecipientServiceServicer_to_server,
                                     RecipientServicer(Store(engine)),
                                     "herald.v1.RecipientService")])
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield pb_grpc.RecipientServiceStub(channel)
    await channel.close()
    await rt.shutdown(0)
    await engine.dispose()


@pytest.fixture(autouse=True)
def no_dev_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_DEV_MODE", "0")


async def fails(call: object, code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT
                ) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    assert err.value.code() == code, err.value.details()
    return err.value


def violations(resp: pb.ValidateTargetsResponse) -> dict[str, str]:
    return {v.field: v.description for v in resp.violations}


async def test_a_sender_belongs_to_one_workspace(stub: pb_grpc.RecipientServiceStub) -> None:
    name = sender_name()
    mine = await stub.RegisterSender(pb.RegisterSenderRequest(channel=c.CHANNEL_SMS, address=name),
                                     metadata=A)
    assert (mine.workspace_id, mine.channel, mine.address) == (WS_A, c.CHANNEL_SMS, name)
    assert mine.created_at.seconds > 0
    again = await stub.RegisterSender(pb.RegisterSenderRequest(channel=c.CHANNEL_SMS, address=name),
                                      metadata=A)
    assert again == mine  # the holder registering it again is answered, not refused
    err = await fails(stub.RegisterSender(pb.RegisterSenderRequest(
        channel=c.CHANNEL_SMS, address=name), metadata=B), grpc.StatusCode.ALREADY_EXISTS)
    assert "another workspace" in err.details()
    await fails(stub.RegisterSender(pb.RegisterSenderRequest(
        channel=c.CHANNEL_SMS, address=sender_name()), metadata=OP_A),
        grpc.StatusCode.PERMISSION_DENIED)

    domain = f"news-{RUN}.example.com"
    mail = await stub.RegisterSender(pb.RegisterSenderRequest(
        channel=c.CHANNEL_EMAIL, address=f"Herald News <news@NEWS-{RUN}.Example.com>"), metadata=A)
    assert mail.address == domain
    await fails(stub.RegisterSender(pb.RegisterSenderRequest(
        channel=c.CHANNEL_EMAIL, address=f"other@{domain}"), metadata=B),
        grpc.StatusCode.ALREADY_EXISTS)

    listed = await stub.ListSenders(pb.ListSendersRequest(), metadata=VIEW_A)  # any member
    assert {(s.channel, s.address) for s in listed.senders} >= {
        (c.CHANNEL_SMS, name), (c.CHANNEL_EMAIL, domain)}
    sms_only = await stub.ListSenders(pb.ListSendersRequest(filter="channel=SMS"), metadata=A)
    assert all(s.channel == c.CHANNEL_SMS for s in sms_only.senders)
    theirs = await stub.ListSenders(pb.ListSendersRequest(), metadata=B)
    assert name not in {s.address for s in theirs.senders}

    # ValidateTargets: the holder passes, another workspace is told whose it is not.
    ok = await stub.ValidateTargets(pb.ValidateTargetsRequest(
        channel=c.CHANNEL_EMAIL, sender=f'"News" <hello@{domain}>'), metadata=A)
    assert not ok.violations
    other = await stub.ValidateTargets(pb.ValidateTargetsRequest(
        channel=c.CHANNEL_SMS, sender=name), metadata=B)
    assert violations(other) == {"campaign.sender": f"sender {name} belongs to another workspace"}

    await fails(stub.DeleteSender(pb.DeleteSenderRequest(channel=c.CHANNEL_SMS, address=name),
                                  metadata=B), grpc.StatusCode.NOT_FOUND)
    gone = await stub.DeleteSender(pb.DeleteSenderRequest(channel=c.CHANNEL_SMS, address=name),
                                   metadata=A)
    assert gone.address == name
    now_b = await stub.RegisterSender(pb.RegisterSenderRequest(channel=c.CHANNEL_SMS, address=name),
                                      metadata=B)
    assert now_b.workspace_id == WS_B

    for address, channel in (("ThisIsTooLongForSMS", c.CHANNEL_SMS), ("12", c.CHANNEL_SMS),
                             ("not a domain", c.CHANNEL_EMAIL), ("a@", c.CHANNEL_EMAIL),
                             ("x\x00", c.CHANNEL_SMS)):
        err = await fails(stub.RegisterSender(pb.RegisterSenderRequest(
            channel=channel, address=address), metadata=A))
        assert "address" in field_violations(err)


async def test_unregistered_senders_outside_and_inside_dev_mode(
        stub: pb_grpc.RecipientServiceStub, monkeypatch: pytest.MonkeyPatch) -> None:
    name = sender_name()
    resp = await stub.ValidateTargets(pb.ValidateTargetsRequest(
        channel=c.CHANNEL_SMS, sender=name, sender_field="sender"), metadata=A)
    assert violations(resp) == {
        "sender": f"sender {name} is not registered to this workspace (RegisterSender)"}
    assert name not in {s.address for s in (await stub.ListSenders(
        pb.ListSendersRequest(), metadata=A)).senders}  # nothing stored outside dev mode

    monkeypatch.setenv("HERALD_DEV_MODE", "1")
    # Development: the first workspace that uses an unknown sender gets it...
    first = await stub.ValidateTargets(pb.ValidateTargetsRequest(
        channel=c.CHANNEL_SMS, sender=name), metadata=A)
    assert not first.violations
    assert name in {s.address for s in (await stub.ListSenders(
        pb.ListSendersRequest(), metadata=A)).senders}
    # ...and it is still exclusive.
    second = await stub.ValidateTargets(pb.ValidateTargetsRequest(
        channel=c.CHANNEL_SMS, sender=name), metadata=B)
    assert violations(second) == {"campaign.sender": f"sender {name} belongs to another workspace"}
    await fails(stub.RegisterSender(pb.RegisterSenderRequest(channel=c.CHANNEL_SMS, address=name),
                                    metadata=B), grpc.StatusCode.ALREADY_EXISTS)
    # An empty sender (the gateway's default) is not checked.
    assert not (await stub.ValidateTargets(pb.ValidateTargetsRequest(
        channel=c.CHANNEL_SMS), metadata=B)).violations


async def test_validate_targets_names_every_violation(stub: pb_grpc.RecipientServiceStub) -> None:
    cat = await stub.CreateCategory(pb.CreateCategoryRequest(name=f"vt-{uuid.uuid4().hex[:8]}"),
                                    metadata=A)
    up = await stub.UpsertContacts(pb.UpsertContactsRequest(contacts=[
        pb.Contact(external_id=f"p-{RUN}", phone="+447700900301", fields={"city": "Leeds"},
                   category_ids=[cat.id]),
        pb.Contact(external_id=f"e-{RUN}", email="mailonly@example.com", fields={"tier": "gold"}),
    ]), metadata=A)
    phone_id, mail_id = (r.contact_id for r in up.results)
    unknown = str(uuid.uuid4())
    before = (await stub.ListContacts(pb.ListContactsRequest(), metadata=A)).total_size
    request = pb.ValidateTargetsRequest(
        channel=c.CHANNEL_SMS, category_ids=[cat.id, unknown, "bad-id"],
        inline=[
            c.Recipient(phone="07700 900302", fields={"code": "X1"}),  # 0: fine
            c.Recipient(phone="07700 90012"),  # 1: not a valid number
            c.Recipient(email="only@example.com"),  # 2: the other channel's address
            c.Recipient(first_name="Nobody"),  # 3: no address at all
            c.Recipient(contact_id=unknown),  # 4: no such contact here
            c.Recipient(contact_id="not-a-uuid"),  # 5: malformed id
            c.Recipient(contact_id=mail_id),  # 6: the contact has no phone
            c.Recipient(contact_id=phone_id),  # 7: fine
            c.Recipient(phone="+447700900303", fields={"k": "v" * 3000}),  # 8: field too long
            c.Recipient(contact_id=mail_id, phone="+447700900304"),  # 9: inline phone wins
        ])
    got = violations(await stub.ValidateTargets(request, metadata=OP_A))
    assert set(got) == {
        "campaign.category_ids[1]", "campaign.category_ids[2]", "recipients[1].phone",
        "recipients[2].phone", "recipients[3]", "recipients[4].contact_id",
        "recipients[5].contact_id", "recipients[6].contact_id", "recipients[8].fields"}
    assert got["campaign.category_ids[1]"] == f"unknown category {unknown}"
    assert "not a category id" in got["campaign.category_ids[2]"]
    # A caller without pii sees the number masked.
    assert got["recipients[1].phone"] == "The phone number ********012 is incorrect"
    assert got["recipients[2].phone"] == (
        "an SMS campaign needs a phone number; this recipient has only an email address")
    assert got["recipients[3]"] == "needs a phone number or a contact_id"
    assert got["recipients[4].contact_id"] == f"contact {unknown} not found"
    assert got["recipients[6].contact_id"] == f"contact {mail_id} has no phone number"

    clear = violations(await stub.ValidateTargets(request, metadata=A))
    assert clear["recipients[1].phone"] == "The phone number 07700 90012 is incorrect"

    # Field-path prefixes of the caller's own request shape.
    custom = await stub.ValidateTargets(pb.ValidateTargetsRequest(
        channel=c.CHANNEL_EMAIL, category_ids=[unknown], inline=[c.Recipient(email="bad@")],
        categories_field="update.category_ids", inline_field="campaign.recipients"), metadata=A)
    assert set(violations(custom)) == {"update.category_ids[0]", "campaign.recipients[0].email"}

    # Template variables: the workspace's contacts' custom fields and the inline ones.
    ok = await stub.ValidateTargets(pb.ValidateTargetsRequest(
        channel=c.CHANNEL_SMS, category_ids=[cat.id],
        inline=[c.Recipient(phone="+447700900305", fields={"code": "X1"})]), metadata=A)
    assert not ok.violations
    assert {"city", "tier", "code"} <= set(ok.field_names)
    assert list(ok.field_names) == sorted(ok.field_names)
    # It never stores anything.
    assert (await stub.ListContacts(pb.ListContactsRequest(), metadata=A)).total_size == before

    await fails(stub.ValidateTargets(pb.ValidateTargetsRequest(channel=99), metadata=A))
    await fails(stub.ValidateTargets(pb.ValidateTargetsRequest(), metadata=A))


async def test_language_and_external_id_reach_the_audience(
        stub: pb_grpc.RecipientServiceStub) -> None:
    cat = await stub.CreateCategory(pb.CreateCategoryRequest(name=f"lang-{uuid.uuid4().hex[:8]}"),
                                    metadata=A)
    ext = f"crm-{uuid.uuid4().hex[:8]}"
    up = await stub.UpsertContacts(pb.UpsertContactsRequest(contacts=[pb.Contact(
        external_id=ext, email="claire@example.com", first_name="Claire", last_name="Dubois",
        language="fr-CA", fields={"city": "Montréal"}, category_ids=[cat.id])]), metadata=A)
    cid = up.results[0].contact_id
    got = await stub.GetContact(pb.GetContactRequest(id=cid), metadata=A)
    assert (got.language, got.external_id) == ("fr-CA", ext)
    listed = await stub.ListContacts(pb.ListContactsRequest(filter=f"category_id={cat.id}"),
                                     metadata=A)
    assert [x.language for x in listed.contacts] == ["fr-CA"]

    svc = as_("svc", WS_A)
    members = [m async for m in stub.ResolveAudience(pb.ResolveAudienceRequest(
        channel=c.CHANNEL_EMAIL, category_ids=[cat.id]), metadata=svc)]
    assert len(members) == 1 and members[0].accepted
    r = members[0].recipient
    assert (r.contact_id, r.external_id, r.language) == (cid, ext, "fr-CA")
    assert (r.first_name, r.last_name, dict(r.fields)) == ("Claire", "Dubois", {"city": "Montréal"})

    # An upsert without a language keeps the stored one; a new one replaces it.
    await stub.UpsertContacts(pb.UpsertContactsRequest(contacts=[pb.Contact(
        external_id=ext, first_name="Claire")]), metadata=A)
    assert (await stub.GetContact(pb.GetContactRequest(id=cid), metadata=A)).language == "fr-CA"
    await stub.UpsertContacts(pb.UpsertContactsRequest(contacts=[pb.Contact(
        external_id=ext, language="en")]), metadata=A)
    assert (await stub.GetContact(pb.GetContactRequest(id=cid), metadata=A)).language == "en"

    # Inline recipients: what the caller gave, over the stored contact's values.
    members = [m async for m in stub.ResolveAudience(pb.ResolveAudienceRequest(
        channel=c.CHANNEL_EMAIL, inline=[
            c.Recipient(contact_id=cid, language="de"),
            c.Recipient(email="walkin@example.com", external_id="pos-7", language="es")]),
        metadata=svc)]
    assert [(m.recipient.external_id, m.recipient.language, m.accepted) for m in members] == [
        (ext, "de", True), ("pos-7", "es", True)]

    bad = await stub.UpsertContacts(pb.UpsertContactsRequest(contacts=[pb.Contact(
        external_id="x", language="not a language")]), metadata=A)
    assert bad.rejected == 1 and bad.results[0].error.startswith("language:")


async def test_page_tokens_are_bound_to_their_list(stub: pb_grpc.RecipientServiceStub) -> None:
    names = sorted(sender_name() for _ in range(3))
    for name in names:
        await stub.RegisterSender(pb.RegisterSenderRequest(channel=c.CHANNEL_SMS, address=name),
                                  metadata=B)
    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListSenders(pb.ListSendersRequest(page_size=1, page_token=token,
                                                            filter="channel=SMS"), metadata=B)
        seen += [s.address for s in page.senders]
        token = page.next_page_token
        if not token:
            break
    assert set(names) <= set(seen) and len(seen) == len(set(seen))

    first = await stub.ListSenders(pb.ListSendersRequest(page_size=1, filter="channel=SMS"),
                                   metadata=B)
    for req, call in (
            (pb.ListSendersRequest(page_token=first.next_page_token), stub.ListSenders),  # no filter
            (pb.ListSendersRequest(page_token=first.next_page_token, filter="channel=SMS"),
             None),  # another workspace: below
            (pb.ListSuppressionsRequest(page_token=first.next_page_token, filter="channel=SMS"),
             stub.ListSuppressions),
            (pb.ListContactsRequest(page_token=first.next_page_token), stub.ListContacts),
            (pb.ListCategoriesRequest(page_token=first.next_page_token), stub.ListCategories),
            (pb.ListSendersRequest(page_token="garbage"), stub.ListSenders)):
        if call is None:
            err = await fails(stub.ListSenders(req, metadata=A))
        else:
            err = await fails(call(req, metadata=B))
        assert "page_token" in field_violations(err)


async def test_request_ids_follow_aip_155(stub: pb_grpc.RecipientServiceStub) -> None:
    name, other = sender_name(), sender_name()
    rid = f"reg-{uuid.uuid4().hex}"
    first = await stub.RegisterSender(pb.RegisterSenderRequest(
        request_id=rid, channel=c.CHANNEL_SMS, address=name), metadata=A)
    assert await stub.RegisterSender(pb.RegisterSenderRequest(
        request_id=rid, channel=c.CHANNEL_SMS, address=name), metadata=A) == first
    err = await fails(stub.RegisterSender(pb.RegisterSenderRequest(
        request_id=rid, channel=c.CHANNEL_SMS, address=other), metadata=A))
    assert "request_id" in field_violations(err)
    assert other not in {s.address for s in (await stub.ListSenders(
        pb.ListSendersRequest(), metadata=A)).senders}

    rid = f"del-{uuid.uuid4().hex}"
    gone = await stub.DeleteSender(pb.DeleteSenderRequest(
        request_id=rid, channel=c.CHANNEL_SMS, address=name), metadata=A)
    assert await stub.DeleteSender(pb.DeleteSenderRequest(
        request_id=rid, channel=c.CHANNEL_SMS, address=name), metadata=A) == gone
    err = await fails(stub.DeleteSender(pb.DeleteSenderRequest(
        request_id=rid, channel=c.CHANNEL_EMAIL, address="example.com"), metadata=A))
    assert "request_id" in field_violations(err)

    rid = f"sup-{uuid.uuid4().hex}"
    await stub.AddSuppression(pb.AddSuppressionRequest(
        request_id=rid, channel=c.CHANNEL_EMAIL, address="a@example.com"), metadata=A)
    err = await fails(stub.AddSuppression(pb.AddSuppressionRequest(
        request_id=rid, channel=c.CHANNEL_EMAIL, address="b@example.com"), metadata=A))
    assert "request_id" in field_violations(err)
    err = await fails(stub.AddSuppression(pb.AddSuppressionRequest(
        request_id="r" * 129, channel=c.CHANNEL_EMAIL, address="b@example.com"), metadata=A))
    assert "request_id" in field_violations(err)


async def test_bad_input_is_invalid_argument_naming_the_field(
        stub: pb_grpc.RecipientServiceStub) -> None:
    cases = [
        (stub.GetContact(pb.GetContactRequest(id="not-a-uuid"), metadata=A), "id"),
        (stub.ListContacts(pb.ListContactsRequest(page_size=-1), metadata=A), "page_size"),
        (stub.ListContacts(pb.ListContactsRequest(filter="category_id=nope"), metadata=A),
         "filter"),
        (stub.CreateCategory(pb.CreateCategoryRequest(name="x" * 201), metadata=A), "name"),
        (stub.CreateCategory(pb.CreateCategoryRequest(name="a\x00b"), metadata=A), "name"),
        (stub.AddSuppression(pb.AddSuppressionRequest(channel=99, address="a@example.com"),
                             metadata=A), "channel"),
        (stub.AddSuppression(pb.AddSuppressionRequest(
            channel=c.CHANNEL_EMAIL, address="a@example.com", reason="\x00"), metadata=A),
         "reason"),
        (stub.AddSuppression(pb.AddSuppressionRequest(
            channel=c.CHANNEL_SMS, address="1" * 100_000), metadata=A), "address"),
        (stub.RegisterSender(pb.RegisterSenderRequest(channel=99, address="HERALD"), metadata=A),
         "channel"),
        (stub.ListSenders(pb.ListSendersRequest(filter="channel=FAX"), metadata=A), "filter"),
        (stub.ListSuppressions(pb.ListSuppressionsRequest(filter="\x00"), metadata=A), "filter"),
    ]
    for call, field in cases:
        err = await fails(call)
        assert field in field_violations(err), (field, err.details())
    err = await fails(stub.ResolveAudience(pb.ResolveAudienceRequest(channel=99),
                                           metadata=A).read())
    assert "channel" in field_violations(err)
    # Rows with NULs or malformed ids are rejected rows, never an INTERNAL.
    up = await stub.UpsertContacts(pb.UpsertContactsRequest(contacts=[
        pb.Contact(external_id="n\x00ul"), pb.Contact(external_id="ok", category_ids=["x\x00"]),
        pb.Contact(external_id="f", fields={"a\x00": "b"})]), metadata=A)
    assert up.rejected == 3
    members = [m async for m in stub.ResolveAudience(pb.ResolveAudienceRequest(
        channel=c.CHANNEL_EMAIL, inline=[c.Recipient(contact_id="x\x00")]), metadata=A)]
    assert [m.accepted for m in members] == [False]
    big = await stub.ListContacts(pb.ListContactsRequest(page_size=2**31 - 1), metadata=A)
    assert big.total_size >= 0
