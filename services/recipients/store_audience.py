"""The contacts of categories as ResolveAudience reads them: oldest first, a keyset query per
chunk, only the columns a recipient carries, rows as tuples (no per-row dict)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from services.recipients.schema import contact_categories, contacts

# Row attributes: id, phone, email, first_name, last_name, fields, external_id, language,
# created_at (the keyset).
COLUMNS = [contacts.c[name] for name in ("id", "phone", "email", "first_name", "last_name",
                                          "fields", "external_id", "language", "created_at")]


async def category_members(engine: AsyncEngine, ws: str, category_ids: Sequence[str],
                           chunk: int) -> AsyncIterator[Sequence[Any]]:
    """Contacts of the workspace in any of the categories, oldest first (so the oldest
    contact wins a duplicate address): a connection is held only while a chunk is read, not
    while it streams, and only one chunk is in memory at a time."""
    member = exists().where(contact_categories.c.contact_id == contacts.c.id,
                            contact_categories.c.category_id.in_(list(category_ids)))
    after: tuple[datetime, str] | None = None
    while True:
        q = select(*COLUMNS).where(contacts.c.workspace_id == ws, member)
        if after is not None:
            q = q.where(tuple_(contacts.c.created_at, contacts.c.id) > tuple_(*after))
        async with engine.connect() as conn:
            res = await conn.execute(q.order_by(contacts.c.created_at, contacts.c.id).limit(chunk))
            rows = res.all()
        if not rows:
            return
        yield rows
        if len(rows) < chunk:
            return
        after = (rows[-1].created_at, rows[-1].id)


async def duplicated_addresses(engine: AsyncEngine, ws: str, category_ids: Sequence[str],
                               field: str) -> set[str] | None:
    """Addresses (phones as stored, emails lower-cased) that more than one contact of the
    categories has: the only ones ResolveAudience must remember while it streams, so its
    memory does not grow with the audience. None when SQL cannot tell (an email with a
    non-ASCII character, which SQL and Python lower-case differently): remember every one."""
    member = exists().where(contact_categories.c.contact_id == contacts.c.id,
                            contact_categories.c.category_id.in_(list(category_ids)))
    col = contacts.c[field]
    key = func.lower(col) if field == "email" else col
    q = (select(key).where(contacts.c.workspace_id == ws, col.is_not(None), col != "", member)
         .group_by(key).having(func.count() > 1))
    async with engine.connect() as conn:
        if field == "email":
            # Any character outside printable ASCII (GLOB on SQLite, a regex on PostgreSQL).
            odd = (col.op("~")("[^ -~]") if conn.dialect.name == "postgresql"
                   else col.op("GLOB")("*[^ -~]*"))
            found = await conn.execute(select(contacts.c.id).where(
                contacts.c.workspace_id == ws, odd, member).limit(1))
            if found.first() is not None:
                return None
        return set((await conn.execute(q)).scalars())
