"""RecipientService over a real gRPC channel (in-process server with the Herald
interceptor, dev-mode auth), on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

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
INVALID = c.FAILURE_CATEGORY_INVALID_ADDRESS
UNSUB = c.FAILURE_CATEGORY_UNSUBSCRIBED


@pytest.fixture(params=["sqlite", "postgresql"], scope="module")
async def stub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
               pg_url: str) -> AsyncIterator[pb_grpc.RecipientServiceStub]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('rdb') / 'recipients.db'}"
    else:
        url = pg_url
    await db.migrate(MIGRATIONS, url)
    await db.migrate(MIGRATIONS, url)  # a restart finds the schema at head
    engine = db.make_engine(url)
    rt = ServiceRuntime("recipients-test")
    port = await rt.start_grpc([(pb_grpc.add_RecipientServiceServicer_to_server,
                                 RecipientServicer(Store(engine)), "herald.v1.RecipientService")])
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    yield pb_grpc.RecipientServiceStub(channel)
    await channel.close()
    await rt.shutdown(0)
    await engine.dispose()


@pytest.fixture
def md() -> tuple:
    """A fresh workspace per test: the databases live for the whole session."""
    return (("x-herald-workspace", f"ws-{uuid.uuid4().hex[:10]}"),)


def other_ws() -> tuple:
    return (("x-herald-workspace", f"ws-{uuid.uuid4().hex[:10]}"),)


async def resolve(stub: pb_grpc.RecipientServiceStub, md: tuple, **kw: object
                  ) -> list[pb.AudienceMember]:
    return [m async for m in stub.ResolveAudience(pb.ResolveAudienceRequest(**kw), metadata=md)]


async def test_upsert_with_bad_rows_saves_the_others(stub: pb_grpc.RecipientServiceStub,
                                                     md: tuple) -> None:
    cat = await stub.CreateCategory(pb.CreateCategoryRequest(name="vip"), metadata=md)
    resp = await stub.UpsertContacts(pb.UpsertContactsRequest(contacts=[
        pb.Contact(external_id="a", phone="07700 900001", first_name="Ann",
                   fields={"city": "Leeds"}, category_ids=[cat.id]),
        pb.Contact(external_id="b", email="not-an-email"),
        pb.Contact(email="Bob@Example.COM", last_name="Stone"),
        pb.Contact(phone="12345"),
        pb.Contact(external_id="c", email="c@example.com", category_ids=["no-such-category"]),
    ]), metadata=md)
    assert (resp.created, resp.updated, resp.rejected) == (2, 0, 3)
    r = resp.results
    assert [x.index for x in r] == [0, 1, 2, 3, 4]
    assert r[0].created and r[0].contact_id and not r[0].error
    assert r[1].error.startswith("email:") and "not-an-email" in r[1].error and not r[1].contact_id
    assert r[2].created and r[2].contact_id
    assert r[3].error.startswith("phone:")
    assert r[4].error.startswith("category_ids:")

    ann = await stub.GetContact(pb.GetContactRequest(id=r[0].contact_id), metadata=md)
    assert ann.phone == "+447700900001" and ann.first_name == "Ann"
    assert dict(ann.fields) == {"city": "Leeds"} and list(ann.category_ids) == [cat.id]
    assert ann.external_id == "a" and ann.created_at.seconds > 0
    bob = await stub.GetContact(pb.GetContactRequest(id=r[2].contact_id), metadata=md)
    assert bob.email == "Bob@example.com"  # domain lower-cased, local part kept
    listed = await stub.ListContacts(pb.ListContactsRequest(), metadata=md)
    assert listed.total_size == 2

    # Same external_id updates; an address match updates a contact without one.
    again = await stub.UpsertContacts(pb.UpsertContactsRequest(contacts=[
        pb.Contact(external_id="a", email="ann@example.com", fields={"tier": "gold"}),
        pb.Contact(email="Bob@example.com", first_name="Bob"),
    ]), metadata=md)
    assert (again.created, again.updated, again.rejected) == (0, 2, 0)
    assert [x.contact_id for x in again.results] == [r[0].contact_id, r[2].contact_id]
    ann = await stub.GetContact(pb.GetContactRequest(id=r[0].contact_id), metadata=md)
    assert ann.email == "ann@example.com" and ann.phone == "+447700900001"
    assert dict(ann.fields) == {"city": "Leeds", "tier": "gold"}
    assert list(ann.category_ids) == [cat.id]

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.UpsertContacts(pb.UpsertContactsRequest(), metadata=md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "contacts" in field_violations(err.value)


async def test_request_id_replay(stub: pb_grpc.RecipientServiceStub, md: tuple) -> None:
    first = await stub.UpsertContacts(pb.UpsertContactsRequest(request_id="imp-1", contacts=[
        pb.Contact(external_id="x", email="x@example.com")]), metadata=md)
    # A faithful retry returns the first answer and changes nothing.
    second = await stub.UpsertContacts(pb.UpsertContactsRequest(request_id="imp-1", contacts=[
        pb.Contact(external_id="x", email="x@example.com")]), metadata=md)
    assert second == first and first.created == 1
    # The same request_id with another body is refused (AIP-155), naming request_id.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.UpsertContacts(pb.UpsertContactsRequest(request_id="imp-1", contacts=[
            pb.Contact(external_id="y", email="y@example.com")]), metadata=md)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request_id" in field_violations(err.value)
    listed = await stub.ListContacts(pb.ListContactsRequest(), metadata=md)
    assert [ct.email for ct in listed.contacts] == ["x@example.com"]
    # request ids are per workspace
    elsewhere = await stub.UpsertContacts(pb.UpsertContactsRequest(request_id="imp-1", contacts=[
        pb.Contact(external_id="x", email="x@example.com")]), metadata=other_ws())
    assert elsewhere.results[0].contact_id != first.results[0].contact_id

    cat1 = await stub.CreateCategory(pb.CreateCategoryRequest(request_id="c-1", name="news"),
                                     metadata=md)
    cat2 = await stub.CreateCategory(pb.CreateCategoryRequest(request_id="c-1", name="news"),
                                     metadata=md)
    assert cat1 == cat2
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateCategory(pb.CreateCategoryRequest(request_id="c-2", name="news"),
                                  metadata=md)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateCategory(pb.CreateCategoryRequest(request_id="c-1", name="other"),
                                  metadata=md)
    assert "request_id" in field_violations(err.value)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.CreateCategory(pb.CreateCategoryRequest(request_id="c-3", name="news"),
                                  metadata=md)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    cats = await stub.ListCategories(pb.ListCategoriesRequest(), metadata=md)
    assert [x.name for x in cats.categories] == ["news"]

    s1 = await stub.AddSuppression(pb.AddSuppressionRequest(
        request_id="s-1", channel=c.CHANNEL_EMAIL, address="Out@Example.com", reason="asked"),
        metadata=md)
    s2 = await stub.AddSuppression(pb.AddSuppressionRequest(
        request_id="s-1", channel=c.CHANNEL_EMAIL, address="Out@Example.com", reason="asked"),
        metadata=md)
    assert s1 == s2 and s1.address == "out@example.com"
    # Without a request_id the same address is still one entry with its first reason.
    s3 = await stub.AddSuppression(pb.AddSuppressionRequest(
        channel=c.CHANNEL_EMAIL, address="out@example.com", reason="again"), metadata=md)
    assert s3.reason == "asked"
    sup = await stub.ListSuppressions(pb.ListSuppressionsRequest(), metadata=md)
    assert len(sup.suppressions) == 1


async def test_resolve_audience(stub: pb_grpc.RecipientServiceStub, md: tuple,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_RECIPIENTS_AUDIENCE_CHUNK", "2")  # several chunks
    a = await stub.CreateCategory(pb.CreateCategoryRequest(name="a"), metadata=md)
    b = await stub.CreateCategory(pb.CreateCategoryRequest(name="b"), metadata=md)
    up = await stub.UpsertContacts(pb.UpsertContactsRequest(contacts=[
        pb.Contact(external_id="1", email="one@example.com", first_name="One",
                   category_ids=[a.id]),
        pb.Contact(external_id="2", email="two@example.com", phone="+447700900002",
                   category_ids=[a.id, b.id]),
        pb.Contact(external_id="3", phone="+447700900003", category_ids=[b.id]),
        pb.Contact(external_id="4", email="gone@example.com", category_ids=[a.id]),
        pb.Contact(external_id="5", email="inline@example.com", category_ids=[a.id]),
        pb.Contact(external_id="6", email="notargeted@example.com"),
    ]), metadata=md)
    ids = {r.index + 1: r.contact_id for r in up.results}
    later = await stub.UpsertContacts(pb.UpsertContactsRequest(contacts=[
        pb.Contact(external_id="7", email="ONE@example.com", category_ids=[b.id])]), metadata=md)
    assert later.created == 1  # a different contact, but the same address as contact 1
    await stub.AddSuppression(pb.AddSuppressionRequest(
        channel=c.CHANNEL_EMAIL, address="gone@example.com", reason="unsubscribed"), metadata=md)
    # The same address in another workspace changes nothing here.
    await stub.AddSuppression(pb.AddSuppressionRequest(
        channel=c.CHANNEL_EMAIL, address="one@example.com"), metadata=other_ws())

    members = await resolve(stub, md, channel=c.CHANNEL_EMAIL, category_ids=[a.id, b.id, a.id],
                            inline=[
        c.Recipient(email="Inline@EXAMPLE.com", first_name="In", last_name="Line",
                    fields={"code": "X1"}),
        c.Recipient(email="inline@example.com"),  # duplicate of the first
        c.Recipient(email="bad@"),
        c.Recipient(phone="+447700900009"),  # no email on an email campaign
        c.Recipient(contact_id=ids[6], fields={"extra": "1"}),
    ])
    by_addr = {m.recipient.email or m.recipient.contact_id: m for m in members}
    assert len(by_addr) == len(members)  # every target once
    inline = by_addr["Inline@example.com"]
    assert inline.accepted and inline.recipient.first_name == "In"
    assert inline.recipient.last_name == "Line" and dict(inline.recipient.fields) == {"code": "X1"}
    assert not inline.recipient.contact_id  # contact 5 has the same address: inline wins
    bad = by_addr["bad@"]
    assert (bad.accepted, bad.rejection) == (False, INVALID)
    assert bad.rejection_reason == "The email address bad@ is incorrect"
    nomail = [m for m in members if m.recipient.phone == "+447700900009"]
    assert len(nomail) == 1 and nomail[0].rejection == INVALID
    assert "no email address" in nomail[0].rejection_reason
    seven = by_addr["notargeted@example.com"]
    assert seven.accepted and seven.recipient.contact_id == ids[6]
    assert dict(seven.recipient.fields) == {"extra": "1"}
    one = by_addr["one@example.com"]
    assert one.accepted and one.recipient.contact_id == ids[1] and one.recipient.first_name == "One"
    assert "ONE@example.com" not in by_addr  # contact 4 duplicates the older contact 1
    assert by_addr["two@example.com"].accepted  # in two categories, listed once
    gone = by_addr["gone@example.com"]
    assert (gone.accepted, gone.rejection) == (False, UNSUB)
    # Added by hand: not worded as the recipient's own unsubscribe.
    assert gone.rejection_reason == (
        "The email address gone@example.com is on the suppression list (unsubscribed)")
    no_email = by_addr[ids[3]]
    assert no_email.rejection == INVALID and "has no email address" in no_email.rejection_reason
    assert sorted(m.accepted for m in members).count(True) == 4

    sms = await resolve(stub, md, channel=c.CHANNEL_SMS, category_ids=[b.id], inline=[
        c.Recipient(phone="07700 900003"), c.Recipient(phone="12345")])
    phones = [(m.recipient.phone, m.accepted, m.rejection_reason) for m in sms]
    assert ("+447700900003", True, "") in phones
    assert ("12345", False, "The phone number 12345 is incorrect") in phones
    assert ("+447700900002", True, "") in phones
    assert sum(1 for p in phones if p[0] == "+447700900003") == 1
    assert any(not m.accepted and "has no phone number" in m.rejection_reason for m in sms)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await resolve(stub, md, channel=c.CHANNEL_EMAIL, category_ids=[a.id, "nope"])
    assert field_violations(err.value) == {"category_ids[1]": "not a category id (a UUID)"}
    missing = str(uuid.uuid4())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await resolve(stub, md, channel=c.CHANNEL_EMAIL, category_ids=[missing])
    assert field_violations(err.value) == {"category_ids[0]": f"unknown category {missing}"}
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await resolve(stub, md, category_ids=[a.id])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "channel" in field_violations(err.value)


async def test_workspace_isolation(stub: pb_grpc.RecipientServiceStub, md: tuple) -> None:
    cat = await stub.CreateCategory(pb.CreateCategoryRequest(name="mine"), metadata=md)
    up = await stub.UpsertContacts(pb.UpsertContactsRequest(contacts=[
        pb.Contact(email="mine@example.com", category_ids=[cat.id])]), metadata=md)
    cid = up.results[0].contact_id
    them = other_ws()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetContact(pb.GetContactRequest(id=cid), metadata=them)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert (await stub.ListContacts(pb.ListContactsRequest(), metadata=them)).total_size == 0
    assert not (await stub.ListCategories(pb.ListCategoriesRequest(), metadata=them)).categories
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await resolve(stub, them, channel=c.CHANNEL_EMAIL, category_ids=[cat.id])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    theirs = await stub.UpsertContacts(pb.UpsertContactsRequest(contacts=[
        pb.Contact(email="mine@example.com", category_ids=[cat.id])]), metadata=them)
    assert theirs.rejected == 1 and "category_ids" in theirs.results[0].error
    theirs = await stub.UpsertContacts(pb.UpsertContactsRequest(contacts=[
        pb.Contact(email="mine@example.com")]), metadata=them)
    assert theirs.created == 1 and theirs.results[0].contact_id != cid  # no cross-workspace match
    mine = await stub.GetContact(pb.GetContactRequest(id=cid), metadata=md)
    assert mine.workspace_id == md[0][1]
    # A contact_id of another workspace in an inline list is not resolved either.
    members = await resolve(stub, them, channel=c.CHANNEL_EMAIL,
                            inline=[c.Recipient(contact_id=cid)])
    assert [(m.accepted, m.rejection_reason) for m in members] == [
        (False, f"Contact {cid} not found")]


async def test_listing_pages_and_filters(stub: pb_grpc.RecipientServiceStub, md: tuple) -> None:
    cat = await stub.CreateCategory(pb.CreateCategoryRequest(name="paged"), metadata=md)
    await stub.CreateCategory(pb.CreateCategoryRequest(name="empty"), metadata=md)
    await stub.UpsertContacts(pb.UpsertContactsRequest(contacts=[
        pb.Contact(external_id=str(i), phone=f"+4477009001{i:02d}",
                   category_ids=[cat.id] if i % 2 else []) for i in range(5)]), metadata=md)
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await stub.ListContacts(pb.ListContactsRequest(page_size=2, page_token=token),
                                       metadata=md)
        assert page.total_size == 5
        seen += [ct.external_id for ct in page.contacts]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 3 and sorted(seen) == ["0", "1", "2", "3", "4"] and len(set(seen)) == 5
    desc = await stub.ListContacts(pb.ListContactsRequest(page_size=10, order_by="created_at desc"),
                                   metadata=md)
    assert [ct.external_id for ct in desc.contacts] == list(reversed(seen))
    only = await stub.ListContacts(pb.ListContactsRequest(filter=f"category_id={cat.id}"),
                                   metadata=md)
    assert sorted(ct.external_id for ct in only.contacts) == ["1", "3"] and only.total_size == 2
    cats = await stub.ListCategories(pb.ListCategoriesRequest(page_size=1), metadata=md)
    assert [(x.name, x.contacts_count) for x in cats.categories] == [("empty", 0)]
    cats = await stub.ListCategories(pb.ListCategoriesRequest(
        page_size=1, page_token=cats.next_page_token), metadata=md)
    assert [(x.name, x.contacts_count) for x in cats.categories] == [("paged", 2)]
    assert not cats.next_page_token
    # The basic view names them without counting members (FULL is the default).
    basic = await stub.ListCategories(pb.ListCategoriesRequest(view=pb.CATEGORY_VIEW_BASIC),
                                      metadata=md)
    full = await stub.ListCategories(pb.ListCategoriesRequest(view=pb.CATEGORY_VIEW_FULL),
                                     metadata=md)
    assert [(x.name, x.contacts_count) for x in full.categories] == [("empty", 0), ("paged", 2)]
    assert [(x.id, x.name, x.workspace_id, x.contacts_count) for x in basic.categories] == [
        (x.id, x.name, x.workspace_id, 0) for x in full.categories]

    await stub.AddSuppression(pb.AddSuppressionRequest(
        channel=c.CHANNEL_SMS, address="07700 900199"), metadata=md)
    await stub.AddSuppression(pb.AddSuppressionRequest(
        channel=c.CHANNEL_EMAIL, address="z@example.com"), metadata=md)
    sms = await stub.ListSuppressions(pb.ListSuppressionsRequest(filter="channel=SMS"), metadata=md)
    assert [s.address for s in sms.suppressions] == ["+447700900199"]
    both = await stub.ListSuppressions(pb.ListSuppressionsRequest(page_size=1), metadata=md)
    assert len(both.suppressions) == 1 and both.next_page_token

    for req, field in ((pb.ListContactsRequest(filter="name=x"), "filter"),
                       (pb.ListContactsRequest(page_token="garbage"), "page_token"),
                       (pb.ListContactsRequest(order_by="email"), "order_by")):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListContacts(req, metadata=md)
        assert field in field_violations(err.value)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.AddSuppression(pb.AddSuppressionRequest(
            channel=c.CHANNEL_SMS, address="not a phone"), metadata=md)
    assert "address" in field_violations(err.value)


async def test_large_audience_streams_in_chunks(stub: pb_grpc.RecipientServiceStub, md: tuple,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_RECIPIENTS_AUDIENCE_CHUNK", "500")
    cat = await stub.CreateCategory(pb.CreateCategoryRequest(name="big"), metadata=md)
    # 1500 rows: also past the threshold that refreshes PostgreSQL's statistics.
    up = await stub.UpsertContacts(pb.UpsertContactsRequest(contacts=[
        pb.Contact(external_id=f"b{i}", email=f"big{i}@example.com", category_ids=[cat.id])
        for i in range(1500)]), metadata=md)
    assert up.created == 1500
    members = await resolve(stub, md, channel=c.CHANNEL_EMAIL, category_ids=[cat.id])
    assert len(members) == 1500 and all(m.accepted for m in members)
    assert len({m.recipient.email for m in members}) == 1500
    cats = await stub.ListCategories(pb.ListCategoriesRequest(), metadata=md)
    assert [x.contacts_count for x in cats.categories] == [1500]
