"""ImportContacts' batch writes (services.recipients.store_import) on a real SQLite and
PostgreSQL database: new contacts and their memberships (binary COPY on PostgreSQL), matches
of stored contacts by key across more keys than one IN list holds, memberships added to
stored contacts, and a constraint violation of a COPY surfacing as the IntegrityError the
import retries on."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError

from services.recipients.import_validate import Good
from services.recipients.schema import contact_categories, contacts
from services.recipients.store import Store
from services.recipients.store_import import Batch, BatchWriter, insert_many
from services.recipients.store_sql import IN_CHUNK
from shared import db

WS = "ws-import-store"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(fresh_db_url: str) -> AsyncIterator[Store]:
    await db.migrate("services/recipients/migrations", fresh_db_url)
    engine = db.make_engine(fresh_db_url)
    try:
        yield Store(engine)
    finally:
        await engine.dispose()


async def category(store: Store, name: str) -> str:
    async with store.write() as conn:
        return str((await store.create_category(conn, WS, name))["id"])


def good(
    line: int,
    ext: str | None,
    phone: str | None = None,
    email: str | None = None,
    cats: tuple[str, ...] = (),
    **kw: Any,
) -> Good:
    return Good(
        line,
        ext,
        phone,
        email,
        kw.get("first_name", f"F{line}"),
        "",
        kw.get("fields", {}),
        list(cats),
        kw.get("language", ""),
    )


async def write(store: Store, writer: BatchWriter, rows: list[Any]) -> Any:
    async with store.write() as conn:
        return await writer.write(conn, Batch(rows, len(rows), ""), NOW)


async def table(store: Store) -> tuple[dict[str, dict[str, Any]], set[tuple[str, str]]]:
    async with store.engine.connect() as conn:
        rows = {
            r["external_id"] or r["phone"] or r["email"]: dict(r)
            for r in (await conn.execute(select(contacts))).mappings()
        }
        links = {(cid, cat) for cid, cat in await conn.execute(select(contact_categories))}
    return rows, links


def statements(store: Store) -> list[str]:
    seen: list[str] = []

    @event.listens_for(store.engine.sync_engine, "before_cursor_execute")
    def _seen(_c: Any, _cur: Any, sql: str, *_a: Any) -> None:
        seen.append(" ".join(sql.split())[:40])

    return seen


async def test_new_contacts_then_matches(store: Store) -> None:
    cat_a, cat_b, extra = [await category(store, n) for n in ("a", "b", "extra")]
    writer = BatchWriter(WS, 0, [extra])
    seen = statements(store)
    out = await write(
        store,
        writer,
        [
            good(2, "e-1", "+447700900001", cats=(cat_a,), fields={"city": "Leeds"}, language="en"),
            good(3, None, "+447700900002", "Bo@example.com", first_name="Bo"),
            good(4, None, None, "cy@example.com"),
            (5, [("phone", "not a phone")]),
        ],
    )
    assert (out.created, out.updated, out.unchanged, out.rejected) == (3, 0, 0, 1)
    assert out.errors == [(5, "phone", "not a phone")]
    rows, links = await table(store)
    assert set(rows) == {"e-1", "+447700900002", "cy@example.com"}
    first = rows["e-1"]
    assert (first["workspace_id"], first["phone"], first["first_name"], first["language"]) == (
        WS,
        "+447700900001",
        "F2",
        "en",
    )
    fields = first["fields"] if isinstance(first["fields"], dict) else json.loads(first["fields"])
    assert fields == {"city": "Leeds"}
    assert rows["+447700900002"]["email"] == "Bo@example.com"
    assert rows["cy@example.com"]["fields"] in ({}, "{}")
    assert links == {(rows["e-1"]["id"], cat_a), *((r["id"], extra) for r in rows.values())}
    if store.engine.dialect.name == "postgresql":  # new rows and their links went by COPY
        assert not [
            s
            for s in seen
            if s.startswith(("INSERT INTO contacts ", "INSERT INTO contact_categories"))
        ]

    # Matched by external_id, by phone, by email: a new category is a membership added to a
    # stored contact (INSERT ... ON CONFLICT), a row changing nothing is unchanged.
    out = await write(
        store,
        writer,
        [
            good(2, "e-1", cats=(cat_b,)),
            good(3, None, "+447700900002", first_name="Bo"),
            good(4, None, None, "cy@example.com", first_name="Cy"),
        ],
    )
    assert (out.created, out.updated, out.unchanged, out.rejected) == (0, 2, 1, 0)
    rows2, links2 = await table(store)
    assert links2 == links | {(rows["e-1"]["id"], cat_b)}
    assert rows2["cy@example.com"]["first_name"] == "Cy"
    assert rows2["e-1"]["phone"] == "+447700900001"  # merge keeps what the row leaves empty


async def test_more_keys_than_one_in_list(store: Store) -> None:
    cat = await category(store, "many")
    writer = BatchWriter(WS, 0, [cat])
    n = IN_CHUNK * 2 + 7
    first = [good(i, f"x-{i}", f"+44740000{i:04d}") for i in range(n)]
    assert (await write(store, writer, first)).created == n
    # The same people by phone only, and by external_id: every one matched, none created.
    by_phone = [good(i, None, f"+44740000{i:04d}") for i in range(n)]
    out = await write(store, writer, by_phone)
    assert (out.created, out.unchanged) == (0, n)
    out = await write(store, BatchWriter(WS, 0, []), [good(i, f"x-{i}") for i in range(n)])
    assert (out.created, out.unchanged) == (0, n)
    rows, links = await table(store)
    assert len(rows) == n and len(links) == n


async def test_copy_conflict_is_an_integrity_error(store: Store) -> None:
    cat = await category(store, "c")
    await write(store, BatchWriter(WS, 0, [cat]), [good(2, "dup", "+447700900009")])
    row = (
        "00000000-0000-7000-8000-000000000001",
        WS,
        "dup",
        None,
        None,
        "",
        "",
        "{}",
        "",
        NOW,
        NOW,
    )
    with pytest.raises(IntegrityError):
        async with store.write() as conn:
            await conn.execute(select(1))  # the transaction is open, as in a batch's write
            await insert_many(
                conn,
                contacts,
                (
                    "id",
                    "workspace_id",
                    "external_id",
                    "phone",
                    "email",
                    "first_name",
                    "last_name",
                    "fields",
                    "language",
                    "created_at",
                    "updated_at",
                ),
                [_as_bound(conn, row)],
                copy=True,
            )
    rows, _ = await table(store)
    assert list(rows) == ["dup"]


def _as_bound(conn: Any, row: tuple[Any, ...]) -> tuple[Any, ...]:
    if conn.dialect.name == "sqlite":  # SQLite takes the timestamps as SQLAlchemy's text
        to_time = contacts.c.created_at.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        return (*row[:9], to_time(row[9]), to_time(row[10]))
    return row


async def test_keys_with_quotes_and_other_scripts_match(store: Store) -> None:
    """Keys travel as one array (PostgreSQL) or one JSON text (SQLite): none is mangled."""
    writer = BatchWriter(WS, 0, [])
    odd = ['a"b', "back\\slash", "x'y", "é-ü", "💥", "tab\there", "[1]", "null", " lead"]
    rows = [good(i, ext) for i, ext in enumerate(odd)]
    rows.append(good(99, None, None, "O'Brien+tag@example.com"))
    assert (await write(store, writer, rows)).created == len(rows)
    out = await write(store, writer, rows)
    assert (out.created, out.unchanged) == (0, len(rows))
