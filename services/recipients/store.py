"""Persistence of contacts, categories and request_id replays (SQLAlchemy Core 2 async;
SQLite and PostgreSQL); the suppression list and senders are in store_lists."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message as PbMessage
from sqlalchemy import (
    bindparam,
    exists,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.recipients.schema import (
    categories,
    contact_categories,
    contact_field_names,
    contacts,
    idempotency,
)
from services.recipients.store_lists import ListsStore
from services.recipients.store_sql import (
    IN_CHUNK,
    chunks,
    insert_ignore,
    new_id,
    pg_custom_plans,
    sqlite_immediate,
)
from shared.errors import HeraldError
from shared.idempotency import mismatch
from shared.timeutil import Clock, aware

M = TypeVar("M", bound=PbMessage)

log = logging.getLogger("herald.recipients.store")

__all__ = ["IN_CHUNK", "ContactRow", "Store", "UpsertOutcome", "chunks", "insert_ignore", "new_id"]

ANALYSE_AFTER = 1000  # contacts created or updated before statistics are refreshed


@dataclass
class ContactRow:
    """A validated UpsertContacts row (addresses already normalised)."""

    index: int
    external_id: str | None
    phone: str | None
    email: str | None
    first_name: str
    last_name: str
    fields: dict[str, str]
    category_ids: list[str]
    language: str = ""


@dataclass
class UpsertOutcome:
    index: int
    contact_id: str = ""
    created: bool = False
    error: str = ""


@dataclass
class _Pending:
    values: dict[str, Any]
    new: bool
    categories: set[str] = field(default_factory=set)


class Store(ListsStore):
    def __init__(self, engine: AsyncEngine, clock: Clock | None = None) -> None:
        self.engine = engine
        self.clock = clock or Clock()
        if engine.dialect.name == "sqlite":
            sqlite_immediate(engine)
        elif engine.dialect.name == "postgresql":
            pg_custom_plans(engine)
        self._writer = engine.execution_options(herald_write=True)
        self._unanalysed = 0
        self._analyse: asyncio.Task[None] | None = None

    def note_imported(self, rows: int) -> None:
        """PostgreSQL plans from table statistics that autovacuum refreshes only after a
        while; right after a big import, stale ones made ResolveAudience sort the whole
        category per chunk (50 s instead of 5 s for 100k contacts). Refresh them at once."""
        if self.engine.dialect.name != "postgresql":
            return
        self._unanalysed += rows
        if self._unanalysed < ANALYSE_AFTER or (self._analyse and not self._analyse.done()):
            return
        self._unanalysed = 0
        self._analyse = asyncio.get_running_loop().create_task(self._run_analyse())

    async def _run_analyse(self) -> None:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("ANALYZE contacts, contact_categories"))
                await conn.commit()
        except Exception:  # statistics are an optimisation; autovacuum catches up anyway
            log.warning("ANALYZE after import failed", exc_info=True)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        async with self._writer.begin() as conn:
            yield conn

    # --- request_id replay --------------------------------------------------------
    async def replay(self, workspace: str, method: str, request_id: str, cls: type[M],
                     fingerprint: str = "") -> M | None:
        """The first answer to this request_id, or None. The same request_id with another
        body (a different fingerprint) is INVALID_ARGUMENT (AIP-155)."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(idempotency.c.response, idempotency.c.fingerprint)
                                      .where(idempotency.c.workspace_id == workspace,
                                             idempotency.c.method == method,
                                             idempotency.c.request_id == request_id))).first()
        if row is None:
            return None
        # Rows written before fingerprints were kept have none: they replay as before.
        if row.fingerprint and fingerprint and row.fingerprint != fingerprint:
            raise mismatch(request_id)
        msg = cls()
        msg.ParseFromString(row.response)
        return msg

    async def mutate(self, workspace: str, method: str, request_id: str, cls: type[M],
                     work: Callable[[AsyncConnection], Awaitable[M]],
                     fingerprint: str = "") -> tuple[M, bool]:
        """Run `work` in one write transaction that also records its response under
        request_id, so a retry gets the first response and changes nothing.
        Returns (response, replayed)."""
        if request_id:
            prior = await self.replay(workspace, method, request_id, cls, fingerprint)
            if prior is not None:
                return prior, True
        try:
            async with self.write() as conn:
                resp = await work(conn)
                if request_id:
                    await conn.execute(insert(idempotency).values(
                        workspace_id=workspace, method=method, request_id=request_id,
                        response=resp.SerializeToString(), created_at=self.clock.now(),
                        fingerprint=fingerprint or None))
        except IntegrityError as exc:
            # A concurrent call with the same request_id won: answer like it did.
            if request_id:
                prior = await self.replay(workspace, method, request_id, cls, fingerprint)
                if prior is not None:
                    return prior, True
            raise HeraldError(grpc.StatusCode.ABORTED,
                              "concurrent change, retry") from exc
        return resp, False

    # --- contacts -----------------------------------------------------------------
    async def upsert_contacts(self, conn: AsyncConnection, ws: str,
                              rows: list[ContactRow]) -> list[UpsertOutcome]:
        """Match each row on external_id, else phone, else email; update or create.
        Category ids are added to the contact's categories (never removed)."""
        out = [UpsertOutcome(r.index) for r in rows]
        wanted_cats = sorted({cid for r in rows for cid in r.category_ids})
        known_cats: set[str] = set()
        for part in chunks(wanted_cats):
            known_cats.update((await conn.execute(select(categories.c.id).where(
                categories.c.workspace_id == ws, categories.c.id.in_(part)))).scalars())

        by_ext: dict[str, str] = {}
        by_phone: dict[str, str] = {}
        by_email: dict[str, str] = {}
        pending: dict[str, _Pending] = {}

        def index(values: dict[str, Any]) -> None:
            cid = values["id"]
            if values["external_id"]:
                by_ext.setdefault(values["external_id"], cid)
            if values["phone"]:
                by_phone.setdefault(values["phone"], cid)
            if values["email"]:
                by_email.setdefault(values["email"], cid)

        exts = sorted({r.external_id for r in rows if r.external_id})
        phones = sorted({r.phone for r in rows if not r.external_id and r.phone})
        emails = sorted({r.email for r in rows if not r.external_id and r.email})
        found: dict[str, dict[str, Any]] = {}
        for col, keys in ((contacts.c.external_id, exts), (contacts.c.phone, phones),
                          (contacts.c.email, emails)):
            for part in chunks(keys):
                # Plain key-index lookups; the oldest-first order is applied below.
                res = await conn.execute(select(contacts).where(
                    contacts.c.workspace_id == ws, col.in_(part)))
                found.update((rec["id"], dict(rec)) for rec in res.mappings())
        # The oldest contact wins when several share a phone or an email.
        for rec in sorted(found.values(), key=lambda r: (aware(r["created_at"]), r["id"])):
            pending[rec["id"]] = _Pending(rec, new=False)
            index(rec)

        now = self.clock.now()
        touched: list[str] = []
        for row, res in zip(rows, out, strict=True):
            unknown = [c for c in row.category_ids if c not in known_cats]
            if unknown:
                res.error = f"category_ids: unknown category {unknown[0]}"
                continue
            if row.external_id:
                cid = by_ext.get(row.external_id)
            else:
                cid = (by_phone.get(row.phone) if row.phone else None) or (
                    by_email.get(row.email) if row.email else None)
            if cid is None:
                cid = new_id()
                pending[cid] = _Pending(dict(
                    id=cid, workspace_id=ws, external_id=row.external_id, phone=row.phone,
                    email=row.email, first_name=row.first_name, last_name=row.last_name,
                    fields=dict(row.fields), language=row.language, created_at=now,
                    updated_at=now), new=True)
                res.created = True
            else:
                v = pending[cid].values
                for key in ("phone", "email", "first_name", "last_name", "external_id",
                            "language"):
                    if getattr(row, key):
                        v[key] = getattr(row, key)
                v["fields"] = {**(v["fields"] or {}), **row.fields}
                v["updated_at"] = now
            index(pending[cid].values)
            pending[cid].categories.update(row.category_ids)
            res.contact_id = cid
            touched.append(cid)

        touched = list(dict.fromkeys(touched))
        new_rows = [pending[c].values for c in touched if pending[c].new]
        old_rows = [pending[c].values for c in touched if not pending[c].new]
        if new_rows:
            await conn.execute(insert(contacts), new_rows)
        if old_rows:
            stmt = update(contacts).where(contacts.c.id == bindparam("b_id")).values(
                external_id=bindparam("b_external_id"), phone=bindparam("b_phone"),
                email=bindparam("b_email"), first_name=bindparam("b_first_name"),
                last_name=bindparam("b_last_name"), fields=bindparam("b_fields"),
                language=bindparam("b_language"), updated_at=bindparam("b_updated_at"))
            await conn.execute(stmt, [{f"b_{k}": v[k] for k in (
                "id", "external_id", "phone", "email", "first_name", "last_name", "fields",
                "language", "updated_at")} for v in old_rows])
        names = sorted({k for r, o in zip(rows, out, strict=True) if not o.error for k in r.fields})
        for part in chunks(names):
            await conn.execute(insert_ignore(conn, contact_field_names, ["workspace_id", "name"]),
                               [{"workspace_id": ws, "name": n} for n in part])
        links = [{"contact_id": c, "category_id": cat} for c in touched
                 for cat in sorted(pending[c].categories)]
        if links:
            await conn.execute(insert_ignore(conn, contact_categories,
                                             ["contact_id", "category_id"]), links)
        return out

    async def get_contact(self, ws: str, contact_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            rec = (await conn.execute(select(contacts).where(
                contacts.c.workspace_id == ws, contacts.c.id == contact_id))).mappings().first()
            if rec is None:
                return None
            cats = await self.category_ids_of(conn, [contact_id])
        return {**rec, "category_ids": cats.get(contact_id, [])}

    @staticmethod
    async def category_ids_of(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for part in chunks(list(ids)):
            res = await conn.execute(select(contact_categories.c.contact_id,
                                            contact_categories.c.category_id).where(
                contact_categories.c.contact_id.in_(part)).order_by(
                contact_categories.c.contact_id, contact_categories.c.category_id))
            for cid, cat in res:
                out.setdefault(cid, []).append(cat)
        return out

    async def list_contacts(self, ws: str, size: int, offset: int, category_id: str | None,
                            descending: bool) -> tuple[list[dict[str, Any]], bool, int]:
        """One page at offset (bound page tokens carry offsets); returns (rows, more, total)."""
        conds = [contacts.c.workspace_id == ws]
        if category_id is not None:
            conds.append(exists().where(contact_categories.c.contact_id == contacts.c.id,
                                        contact_categories.c.category_id == category_id))
        order = ([contacts.c.created_at.desc(), contacts.c.id.desc()] if descending
                 else [contacts.c.created_at, contacts.c.id])
        q = select(contacts).where(*conds).order_by(*order).offset(offset).limit(size + 1)
        async with self.engine.connect() as conn:
            recs = [dict(r) for r in (await conn.execute(q)).mappings()]
            total = (await conn.execute(select(func.count()).select_from(contacts).where(
                *conds))).scalar_one()
            more = len(recs) > size
            recs = recs[:size]
            cats = await self.category_ids_of(conn, [r["id"] for r in recs])
        for r in recs:
            r["category_ids"] = cats.get(r["id"], [])
        return recs, more, int(total)

    async def contacts_by_ids(self, ws: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        async with self.engine.connect() as conn:
            for part in chunks(list(dict.fromkeys(ids))):
                res = await conn.execute(select(contacts).where(
                    contacts.c.workspace_id == ws, contacts.c.id.in_(part)))
                out.update({r["id"]: dict(r) for r in res.mappings()})
        return out

    # --- categories ---------------------------------------------------------------
    async def create_category(self, conn: AsyncConnection, ws: str, name: str) -> dict[str, Any]:
        dup = (await conn.execute(select(categories.c.id).where(
            categories.c.workspace_id == ws, categories.c.name == name))).first()
        if dup is not None:
            raise HeraldError(grpc.StatusCode.ALREADY_EXISTS,
                              f"category {name!r} already exists ({dup.id})")
        values = dict(id=new_id(), workspace_id=ws, name=name, created_at=self.clock.now())
        await conn.execute(insert(categories).values(**values))
        return values

    @staticmethod
    async def category(conn: AsyncConnection, ws: str, category_id: str) -> dict[str, Any] | None:
        """The workspace's category with its contacts_count, or None."""
        rec = (await conn.execute(select(categories).where(
            categories.c.workspace_id == ws, categories.c.id == category_id))).mappings().first()
        if rec is None:
            return None
        count = (await conn.execute(select(func.count()).select_from(contact_categories).where(
            contact_categories.c.category_id == category_id))).scalar_one()
        return {**rec, "contacts_count": int(count)}

    async def rename_category(self, conn: AsyncConnection, ws: str, category_id: str,
                              name: str) -> dict[str, Any] | None:
        """The renamed category, or None when the workspace has none with that id. Another
        category of the workspace with the name is ALREADY_EXISTS."""
        rec = await self.category(conn, ws, category_id)
        if rec is None or rec["name"] == name:
            return rec
        dup = (await conn.execute(select(categories.c.id).where(
            categories.c.workspace_id == ws, categories.c.name == name))).first()
        if dup is not None:
            raise HeraldError(grpc.StatusCode.ALREADY_EXISTS,
                              f"category {name!r} already exists ({dup.id})")
        await conn.execute(update(categories).where(categories.c.id == category_id).values(
            name=name))
        return {**rec, "name": name}

    async def delete_category(self, conn: AsyncConnection, ws: str,
                              category_id: str) -> dict[str, Any] | None:
        """Deletes the category and its memberships (never the contacts); returns it as it
        was, or None when the workspace has none with that id."""
        rec = await self.category(conn, ws, category_id)
        if rec is None:
            return None
        await conn.execute(contact_categories.delete().where(
            contact_categories.c.category_id == category_id))
        await conn.execute(categories.delete().where(categories.c.id == category_id))
        return rec

    async def existing_categories(self, ws: str, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        async with self.engine.connect() as conn:
            for part in chunks(list(ids)):
                found.update((await conn.execute(select(categories.c.id).where(
                    categories.c.workspace_id == ws, categories.c.id.in_(part)))).scalars())
        return found

    async def list_categories(self, ws: str, size: int, offset: int,
                              counted: bool = True) -> tuple[list[dict[str, Any]], bool]:
        """A page of categories; counted=False skips the member count (grows with sizes)."""
        cols = (categories.c.id, categories.c.workspace_id, categories.c.name)
        if counted:
            count = func.count(contact_categories.c.contact_id).label("contacts_count")
            q = select(*cols, count).select_from(categories.outerjoin(
                contact_categories, contact_categories.c.category_id == categories.c.id)).where(
                categories.c.workspace_id == ws).group_by(*cols)
        else:
            q = select(*cols).where(categories.c.workspace_id == ws)
        async with self.engine.connect() as conn:
            recs = [dict(r) for r in (await conn.execute(q.order_by(
                categories.c.name, categories.c.id).offset(offset).limit(size + 1))).mappings()]
        return recs[:size], len(recs) > size

    async def field_names(self, ws: str, limit: int) -> list[str]:
        """Custom field names the workspace's contacts carry (kept at upsert), by name."""
        async with self.engine.connect() as conn:
            return list((await conn.execute(select(contact_field_names.c.name).where(
                contact_field_names.c.workspace_id == ws).order_by(
                contact_field_names.c.name).limit(limit))).scalars())
