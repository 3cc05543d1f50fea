"""ImportContacts through the public gRPC API, against the recipients service as a real
process on SQLite and on PostgreSQL:

- good rows are imported into the import's categories, bad rows come back by line and field
  (the good ones are kept), and never as an INTERNAL error;
- a retry with the same request_id does not double anything, even after a stream that broke
  half-way (it continues after the committed rows); the same request_id with other rows is
  refused;
- a workspace never sees or matches another workspace's contacts;
- the conflict policies (merge, skip, reject) and a 50,000-row import.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2 as pb
from herald.v1 import recipients_pb2_grpc as pb_grpc

from cli import procs
from shared.errors import field_violations

WS_A, WS_B = "ws-import-a", "ws-import-b"
TOKENS = {
    "svc": {"name": "importer", "workspace": "none", "roles": ["service"], "pii": True},
    "op-a": {"name": "op-a", "workspace": WS_A, "roles": ["operator"], "pii": False},
    "viewer-a": {"name": "viewer-a", "workspace": WS_A, "roles": ["viewer"], "pii": True},
}


def md(workspace: str, token: str = "svc") -> tuple:
    return (("authorization", f"Bearer {token}"), ("x-herald-workspace", workspace))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def recipients_proc(request: pytest.FixtureRequest,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    work: Path = tmp_path_factory.mktemp(f"contract-import-{request.param}")
    db = (f"sqlite+aiosqlite:///{work / 'recipients.db'}" if request.param == "sqlite"
          else request.getfixturevalue("pg_url"))
    nats = procs.start_nats(work / "nats")
    tokens = work / "tokens.json"
    tokens.write_text(json.dumps(TOKENS))
    try:
        proc = procs.start_module("recipients", "services.recipients", work, {
            "HERALD_DB_URL": db, "HERALD_NATS_URL": str(nats.info["url"]),
            "HERALD_GRPC_ADDR": "127.0.0.1:0", "HERALD_METRICS_ADDR": "127.0.0.1:0",
            "HERALD_TOKENS_FILE": str(tokens), "HERALD_DEV_MODE": "0",
            "HERALD_LOG_FORMAT": "text"})
    except Exception:
        nats.stop()
        raise
    yield int(proc.info["grpc_port"])
    proc.stop()
    nats.stop()


@pytest.fixture
async def stub(recipients_proc: int) -> AsyncIterator[pb_grpc.RecipientServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{recipients_proc}") as ch:
        yield pb_grpc.RecipientServiceStub(ch)


def messages(options: pb.ImportContactsOptions | None, rows: list[tuple[int, pb.Contact]],
             chunk: int = 1000) -> list[pb.ImportContactsRequest]:
    out = [pb.ImportContactsRequest(options=options)] if options is not None else []
    for i in range(0, len(rows), chunk):
        part = rows[i:i + chunk]
        out.append(pb.ImportContactsRequest(contacts=[c for _, c in part],
                                            lines=[n for n, _ in part]))
    return out


async def run_import(stub: pb_grpc.RecipientServiceStub, workspace: str,
                     reqs: list[pb.ImportContactsRequest], token: str = "svc") -> pb.ImportContactsResponse:
    return await stub.ImportContacts(iter(reqs), metadata=md(workspace, token), timeout=120)


async def category_total(stub: pb_grpc.RecipientServiceStub, workspace: str, cat: str) -> int:
    resp = await stub.ListContacts(pb.ListContactsRequest(filter=f"category_id={cat}", page_size=1),
                                   metadata=md(workspace))
    return resp.total_size


def uniq(tag: str) -> str:
    return f"{tag}-{time.time_ns()}"


async def test_good_rows_are_imported_and_bad_rows_reported_by_line_and_field(
        stub: pb_grpc.RecipientServiceStub) -> None:
    name = uniq("list")
    other = await stub.CreateCategory(pb.CreateCategoryRequest(name=uniq("other")), metadata=md(WS_A))
    rows = [
        (2, pb.Contact(phone="07700 900101", first_name="Ada", external_id=uniq("a"))),
        (3, pb.Contact(phone="+44 12", first_name="Bad phone")),
        (4, pb.Contact(email="not-an-address", external_id=uniq("b"))),
        (5, pb.Contact(first_name="No address")),
        (7, pb.Contact(email="grace@example.com", language="en", fields={"plan": "gold"},
                       category_ids=[other.id])),
        (8, pb.Contact(email="x@example.com", category_ids=["00000000-0000-0000-0000-000000000000"])),
        (9, pb.Contact(phone="+44 12", email="also bad", language="not a tag!")),
    ]
    resp = await run_import(stub, WS_A, messages(pb.ImportContactsOptions(
        categories=[name], create_missing_categories=True), rows, chunk=3))
    assert (resp.rows, resp.created, resp.updated, resp.unchanged, resp.rejected) == (7, 2, 0, 0, 5)
    assert [(e.line, e.field) for e in resp.errors] == [
        (3, "phone"), (4, "email"), (5, "contact"), (8, "category_ids"),
        (9, "phone"), (9, "email"), (9, "language")]
    assert "not a valid phone number" in resp.errors[0].description
    [cat] = resp.created_category_ids
    listed = await stub.ListContacts(pb.ListContactsRequest(filter=f"category_id={cat}"),
                                     metadata=md(WS_A))
    by_first = {ct.first_name or ct.email: ct for ct in listed.contacts}
    assert set(by_first) == {"Ada", "grace@example.com"}
    assert by_first["Ada"].phone == "+447700900101"  # normalised like UpsertContacts
    assert sorted(by_first["grace@example.com"].category_ids) == sorted([cat, other.id])
    assert dict(by_first["grace@example.com"].fields) == {"plan": "gold"}


async def test_bad_options_are_refused_naming_the_field_before_anything_is_written(
        stub: pb_grpc.RecipientServiceStub) -> None:
    ext = uniq("never")
    for options, field in (
            (pb.ImportContactsOptions(categories=["no such list"]), "options.categories[0]"),
            (pb.ImportContactsOptions(request_id="x" * 129), "options.request_id"),
            (pb.ImportContactsOptions(on_conflict=99), "options.on_conflict")):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await run_import(stub, WS_A, messages(options, [(2, pb.Contact(external_id=ext))]))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in field_violations(err.value)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await run_import(stub, WS_A, [pb.ImportContactsRequest(
            contacts=[pb.Contact(external_id=ext)], lines=[1, 2])])
    assert "lines" in field_violations(err.value)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await run_import(stub, WS_A, messages(None, [(2, pb.Contact(external_id=ext))]), "viewer-a")
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_addresses_in_errors_are_masked_for_a_caller_without_pii(
        stub: pb_grpc.RecipientServiceStub) -> None:
    resp = await run_import(stub, WS_A, messages(None, [(4, pb.Contact(phone="+44 7700 900 1234 56"))]),
                            "op-a")
    assert [(e.line, e.field) for e in resp.errors] == [(4, "phone")]
    assert "900 1234" not in resp.errors[0].description


async def test_a_retry_with_the_same_request_id_does_not_double(
        stub: pb_grpc.RecipientServiceStub) -> None:
    name, rid = uniq("retry"), uniq("rid")
    rows = [(i + 2, pb.Contact(email=f"r{i}@example.com", external_id=f"{rid}-{i}")) for i in range(30)]
    rows.append((40, pb.Contact(email="broken")))
    options = pb.ImportContactsOptions(request_id=rid, categories=[name], create_missing_categories=True)
    first = await run_import(stub, WS_A, messages(options, rows, chunk=7))
    assert (first.created, first.rejected) == (30, 1)
    again = await run_import(stub, WS_A, messages(options, rows, chunk=11))  # other chunking
    assert again == first
    assert await category_total(stub, WS_A, first.created_category_ids[0]) == 30
    # The same request_id with other rows (or options) is refused, not replayed.
    changed = [*rows[:-1], (40, pb.Contact(email="fixed@example.com"))]
    for opts, body in ((options, changed),
                       (pb.ImportContactsOptions(request_id=rid, categories=[name]), rows)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await run_import(stub, WS_A, messages(opts, body))
        assert "options.request_id" in field_violations(err.value)
    assert await category_total(stub, WS_A, first.created_category_ids[0]) == 30


async def test_a_retry_after_a_broken_stream_continues_after_the_committed_rows(
        stub: pb_grpc.RecipientServiceStub) -> None:
    cat = await stub.CreateCategory(pb.CreateCategoryRequest(name=uniq("resume")), metadata=md(WS_A))
    rid = uniq("resume")
    rows = [(i + 2, pb.Contact(external_id=f"{rid}-{i}", first_name=f"R{i}")) for i in range(12_000)]
    options = pb.ImportContactsOptions(request_id=rid, categories=[cat.id])
    reqs = messages(options, rows)
    gate = asyncio.Event()

    async def broken() -> AsyncIterator[pb.ImportContactsRequest]:
        for r in reqs[:-2]:  # 10,000 rows: two transactions of the default size
            yield r
        await gate.wait()  # the stream breaks before the last rows

    call = stub.ImportContacts(broken(), metadata=md(WS_A), timeout=120)
    deadline = time.monotonic() + 60
    while await category_total(stub, WS_A, cat.id) < 10_000:
        assert time.monotonic() < deadline, "the first 10,000 rows were never committed"
        await asyncio.sleep(0.1)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    resp = await run_import(stub, WS_A, reqs)
    assert (resp.rows, resp.created, resp.updated, resp.unchanged, resp.rejected) == (12_000, 12_000, 0, 0, 0)
    assert await category_total(stub, WS_A, cat.id) == 12_000


async def test_another_workspace_is_isolated(stub: pb_grpc.RecipientServiceStub) -> None:
    rid, ext = uniq("shared-rid"), uniq("same-ext")
    cat_a = await stub.CreateCategory(pb.CreateCategoryRequest(name=uniq("iso")), metadata=md(WS_A))
    a = await run_import(stub, WS_A, messages(pb.ImportContactsOptions(
        request_id=rid, categories=[cat_a.id]), [(2, pb.Contact(external_id=ext, first_name="A"))]))
    assert a.created == 1
    # ws-b: the same request_id is its own, the same external_id a new contact of its own, and
    # ws-a's category id is unknown there.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await run_import(stub, WS_B, messages(pb.ImportContactsOptions(categories=[cat_a.id]), []))
    assert "options.categories[0]" in field_violations(err.value)
    b = await run_import(stub, WS_B, messages(pb.ImportContactsOptions(request_id=rid), [
        (2, pb.Contact(external_id=ext, first_name="B")),
        (3, pb.Contact(external_id=uniq("b"), category_ids=[cat_a.id]))]))
    assert (b.created, b.rejected) == (1, 1)
    assert [(e.line, e.field) for e in b.errors] == [(3, "category_ids")]
    listed = await stub.ListContacts(pb.ListContactsRequest(filter=f"category_id={cat_a.id}"),
                                     metadata=md(WS_A))
    assert [ct.first_name for ct in listed.contacts] == ["A"]


async def test_conflict_policies(stub: pb_grpc.RecipientServiceStub) -> None:
    ext = uniq("policy")
    cat = await stub.CreateCategory(pb.CreateCategoryRequest(name=uniq("policy")), metadata=md(WS_A))
    base = [(2, pb.Contact(external_id=ext, first_name="Old", fields={"a": "1"}))]
    assert (await run_import(stub, WS_A, messages(None, base))).created == 1
    same = await run_import(stub, WS_A, messages(None, base))
    assert (same.updated, same.unchanged) == (0, 1)
    row = [(5, pb.Contact(external_id=ext, first_name="New", fields={"b": "2"}))]
    skip = await run_import(stub, WS_A, messages(pb.ImportContactsOptions(
        on_conflict=pb.IMPORT_CONFLICT_POLICY_SKIP, categories=[cat.id]), row))
    assert (skip.updated, skip.unchanged) == (1, 0)  # gained the category only
    reject = await run_import(stub, WS_A, messages(pb.ImportContactsOptions(
        on_conflict=pb.IMPORT_CONFLICT_POLICY_REJECT), row))
    assert reject.rejected == 1 and [(e.line, e.field) for e in reject.errors] == [(5, "external_id")]
    [ct] = (await stub.ListContacts(pb.ListContactsRequest(filter=f"category_id={cat.id}"),
                                    metadata=md(WS_A))).contacts
    assert (ct.first_name, dict(ct.fields)) == ("Old", {"a": "1"})
    merged = await run_import(stub, WS_A, messages(None, row))
    assert merged.updated == 1
    ct = await stub.GetContact(pb.GetContactRequest(id=ct.id), metadata=md(WS_A))
    assert (ct.first_name, dict(ct.fields)) == ("New", {"a": "1", "b": "2"})


async def test_a_50000_row_import_completes(stub: pb_grpc.RecipientServiceStub) -> None:
    cat = await stub.CreateCategory(pb.CreateCategoryRequest(name=uniq("big")), metadata=md(WS_A))
    tag = uniq("big")
    n = 50_000

    async def reqs() -> AsyncIterator[pb.ImportContactsRequest]:
        yield pb.ImportContactsRequest(options=pb.ImportContactsOptions(
            request_id=tag, categories=[cat.id]))
        for k in range(0, n, 2000):
            yield pb.ImportContactsRequest(contacts=[
                pb.Contact(email=f"{tag}-{i}@example.com", external_id=f"{tag}-{i}", first_name="Big")
                for i in range(k, k + 2000)])

    t0 = time.monotonic()
    resp = await stub.ImportContacts(reqs(), metadata=md(WS_A), timeout=120)
    took = time.monotonic() - t0
    assert (resp.rows, resp.created, resp.rejected) == (n, n, 0), resp.errors[:3]
    assert await category_total(stub, WS_A, cat.id) == n
    print(f"\n50,000 rows imported in {took:.1f} s ({n / took:,.0f} rows/s)")


async def test_an_imported_category_resolves_in_chunks_like_member_by_member(
        stub: pb_grpc.RecipientServiceStub) -> None:
    """ResolveAudienceChunks answers what ResolveAudience does, in the same order: each
    address once (the oldest contact wins), invalid and suppressed ones rejected."""
    cat = await stub.CreateCategory(pb.CreateCategoryRequest(name=uniq("aud")), metadata=md(WS_A))
    tag = uniq("aud")
    rows = [(i + 2, pb.Contact(external_id=f"{tag}-{i}", email=f"{tag}-{i % 2500}@example.com",
                               first_name=f"N{i}")) for i in range(3000)]  # 500 shared
    rows.append((9000, pb.Contact(external_id=f"{tag}-case", email=f"{tag}-7@EXAMPLE.com")))
    rows.append((9001, pb.Contact(external_id=f"{tag}-none", phone="+447700900111")))
    rows.append((9002, pb.Contact(external_id=f"{tag}-stop", email=f"{tag}-stop@example.com")))
    assert (await run_import(stub, WS_A, messages(pb.ImportContactsOptions(
        categories=[cat.id]), rows))).created == len(rows)
    await stub.AddSuppression(pb.AddSuppressionRequest(
        channel=c.CHANNEL_EMAIL, address=f"{tag}-stop@example.com", reason="asked"), metadata=md(WS_A))
    req = pb.ResolveAudienceRequest(channel=c.CHANNEL_EMAIL, category_ids=[cat.id])
    one_by_one = [m async for m in stub.ResolveAudience(req, metadata=md(WS_A))]
    chunks = [ch async for ch in stub.ResolveAudienceChunks(req, metadata=md(WS_A))]
    assert all(ch.members for ch in chunks)
    assert [m for ch in chunks for m in ch.members] == one_by_one
    accepted = [m.recipient.email for m in one_by_one if m.accepted]
    assert len(accepted) == len(set(accepted)) == 2500
    assert f"{tag}-7@example.com" in accepted and f"{tag}-7@EXAMPLE.com" not in accepted
    by_email = {m.recipient.email: m for m in one_by_one}
    assert by_email[f"{tag}-0@example.com"].recipient.first_name == "N0"  # the oldest wins
    rejected = {m.recipient.external_id: m.rejection for m in one_by_one if not m.accepted}
    assert rejected == {f"{tag}-none": c.FAILURE_CATEGORY_INVALID_ADDRESS,
                        f"{tag}-stop": c.FAILURE_CATEGORY_UNSUBSCRIBED}
