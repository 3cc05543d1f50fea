"""ImportContacts' writes: one batch of validated rows matched, merged and written with
multi-row statements (executemany) in the caller's transaction, and the import's progress
under its request_id, so a retry continues after the rows already committed."""

from __future__ import annotations

import json
import os
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
from herald.v1 import recipients_pb2 as pb
from sqlalchemy import DateTime, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.recipients.import_validate import Checked, Good
from services.recipients.schema import (
    categories,
    contact_categories,
    contact_field_names,
    contacts,
    idempotency,
)
from services.recipients.store_sql import chunks, insert_ignore, key_filters
from shared.errors import HeraldError
from shared.timeutil import aware

METHOD = "ImportContacts"
MAX_ERRORS = 1000  # ImportContactsResponse.errors listed at most
MERGE, SKIP, REJECT = (pb.IMPORT_CONFLICT_POLICY_MERGE, pb.IMPORT_CONFLICT_POLICY_SKIP,
                       pb.IMPORT_CONFLICT_POLICY_REJECT)
_COMPARED = ("external_id", "phone", "email", "first_name", "last_name", "fields", "language")
_COPIED = ("phone", "email", "first_name", "last_name", "external_id", "language")
_UPDATE_COLS = ("id", *_COMPARED, "updated_at")


@dataclass
class Batch:
    """Validated rows of the stream (ContactRow.index is the row's line) or, for a bad row,
    (line, [(field, reason)]); position and digest: the stream's state after its last row."""

    rows: list[Checked]
    position: int
    digest: str


@dataclass
class Counts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    errors: list[tuple[int, str, str]] = field(default_factory=list)  # (line, field, reason)
    rejected: int = 0


@dataclass(slots=True)
class _Contact:
    values: dict[str, Any]
    new: bool
    cats: set[str]  # categories it is in (stored + added)


class BatchWriter:
    """Writes batches of one import: the workspace, conflict policy and the import-wide
    categories are fixed for the whole stream."""

    def __init__(self, ws: str, policy: int, extra_categories: list[str]) -> None:
        self.ws = ws
        self.policy = policy or MERGE
        self.extra = extra_categories
        self.now: Any = None

    async def write(self, conn: AsyncConnection, batch: Batch, now: Any) -> Counts:
        self.now = now
        out = Counts()
        good: list[Good] = []
        for r in batch.rows:
            if isinstance(r, Good):
                good.append(r)
            else:
                out.rejected += 1
                out.errors.extend((r[0], f, why) for f, why in r[1])
        known = await self._known_categories(conn, {c for r in good for c in r.category_ids})
        found = await self._existing(conn, good)
        by_key: dict[tuple[str, str], str] = {}
        pool: dict[str, _Contact] = {}
        for rec in sorted(found.values(), key=lambda r: (aware(r["created_at"]), r["id"])):
            pool[rec["id"]] = _Contact(rec, new=False, cats=set())
            self._index(by_key, rec)
        for cid, cats in (await self._memberships(conn, list(pool))).items():
            pool[cid].cats.update(cats)
        ids = iter(new_ids(len(good)))
        dirty: dict[str, None] = {}  # contacts to write, in row order (new ids ascending)
        linked: tuple[list[tuple[str, str]], list[tuple[str, str]]] = ([], [])  # new, stored
        names: set[str] = set()
        extra, policy, now, ws = self.extra, self.policy, self.now, self.ws
        created = updated = unchanged = 0
        for row in good:
            row_cats = row.category_ids
            if row_cats:
                unknown = next((c for c in row_cats if c not in known), None)
                if unknown is not None:
                    out.rejected += 1
                    out.errors.append((row.line, "category_ids", f"unknown category {unknown}"))
                    continue
            ext, phone, email = row.external_id, row.phone, row.email
            if ext:
                key = ("external_id", ext)
                cid = by_key.get(key)
            else:
                key = ("phone", phone) if phone else ("email", email or "")
                cid = by_key.get(key)
                if cid is None and phone and email:
                    key = ("email", email)
                    cid = by_key.get(key)
            wanted = [*row_cats, *extra] if row_cats else extra
            if cid is None:
                cid = next(ids)
                ct = pool[cid] = _Contact(
                    {"id": cid, "workspace_id": ws, "external_id": ext, "phone": phone,
                     "email": email, "first_name": row.first_name, "last_name": row.last_name,
                     "fields": dict(row.fields), "language": row.language, "created_at": now,
                     "updated_at": now}, new=True, cats=set())
                created += 1
                dirty[cid] = None
                # What _index would add for these values, without the dict lookups.
                if ext:
                    by_key.setdefault(("external_id", ext), cid)
                if phone:
                    by_key.setdefault(("phone", phone), cid)
                if email:
                    by_key.setdefault(("email", email), cid)
            else:
                if policy == REJECT:
                    out.rejected += 1
                    out.errors.append((row.line, key[0], f"matches the existing contact {cid}"))
                    continue
                ct = pool[cid]
                changed = policy == MERGE and self._merge(ct.values, row)
                if changed:
                    dirty[cid] = None
                if changed or any(c not in ct.cats for c in wanted):
                    updated += 1
                else:
                    unchanged += 1
                self._index(by_key, ct.values)
            cats = ct.cats
            links = linked[0] if ct.new else linked[1]
            for cat in wanted:
                if cat not in cats:
                    cats.add(cat)
                    links.append((cid, cat))
            if row.fields and (policy == MERGE or ct.new):
                names.update(row.fields)
        out.created, out.updated, out.unchanged = created, updated, unchanged
        await self._flush(conn, [pool[c] for c in dirty], linked, names)
        out.errors.sort(key=lambda e: e[0])
        return out

    def _contact_tuples(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        """New contacts as INSERT parameters, converted as SQLAlchemy would (JSON text;
        SQLite's date text) but each distinct timestamp once: a batch's rows share one."""
        d = conn.dialect
        to_json = contacts.c.fields.type.dialect_impl(d).bind_processor(d) or (lambda x: x)
        to_time = contacts.c.created_at.type.dialect_impl(d).bind_processor(d) or (lambda x: x)
        empty, now = to_json({}), to_time(self.now)
        ws = self.ws
        return [(v["id"], ws, v["external_id"], v["phone"], v["email"], v["first_name"],
                 v["last_name"], to_json(v["fields"]) if v["fields"] else empty, v["language"],
                 now, now) for v in rows]

    @staticmethod
    def _index(by_key: dict[tuple[str, str], str], values: dict[str, Any]) -> None:
        for name in ("external_id", "phone", "email"):
            if values[name]:
                by_key.setdefault((name, values[name]), values["id"])

    def _merge(self, v: dict[str, Any], row: Good) -> bool:
        """UpsertContacts' merge into the stored values; True when anything changed."""
        before = tuple(v[k] for k in _COMPARED)
        for key in _COPIED:
            value = getattr(row, key)
            if value:
                v[key] = value
        v["fields"] = {**(v["fields"] or {}), **row.fields}
        if tuple(v[k] for k in _COMPARED) == before:
            return False
        v["updated_at"] = self.now
        return True

    async def _known_categories(self, conn: AsyncConnection, wanted: set[str]) -> set[str]:
        known: set[str] = set()
        for part in chunks(sorted(wanted)):
            known.update((await conn.execute(select(categories.c.id).where(
                categories.c.workspace_id == self.ws, categories.c.id.in_(part)))).scalars())
        return known

    async def _existing(self, conn: AsyncConnection, rows: list[Good]) -> dict[str, dict[str, Any]]:
        exts = sorted({r.external_id for r in rows if r.external_id})
        phones = sorted({r.phone for r in rows if not r.external_id and r.phone})
        emails = sorted({r.email for r in rows if not r.external_id and r.email})
        found: dict[str, dict[str, Any]] = {}
        for col, keys in ((contacts.c.external_id, exts), (contacts.c.phone, phones),
                          (contacts.c.email, emails)):
            for cond in key_filters(conn, col, keys):
                res = await conn.execute(select(contacts).where(
                    contacts.c.workspace_id == self.ws, cond))
                found.update((rec["id"], dict(rec)) for rec in res.mappings())
        return found

    @staticmethod
    async def _memberships(conn: AsyncConnection, ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for cond in key_filters(conn, contact_categories.c.contact_id, ids):
            res = await conn.execute(select(contact_categories.c.contact_id,
                                            contact_categories.c.category_id).where(cond))
            for cid, cat in res:
                out.setdefault(cid, []).append(cat)
        return out

    async def _flush(self, conn: AsyncConnection, touched: list[_Contact],
                     links: tuple[list[tuple[str, str]], list[tuple[str, str]]],
                     names: set[str]) -> None:
        """Writes the batch: links are (memberships of new contacts, of stored contacts)."""
        new_rows = [c.values for c in touched if c.new]
        old_rows = [c.values for c in touched if not c.new]
        if new_rows:
            await insert_many(conn, contacts, _INSERT_COLS, self._contact_tuples(conn, new_rows),
                              copy=True)
        if old_rows:
            stmt = update(contacts).where(contacts.c.id == bindparam("b_id")).values(
                **{k: bindparam(f"b_{k}") for k in _UPDATE_COLS if k != "id"})
            await conn.execute(stmt, [{f"b_{k}": v[k] for k in _UPDATE_COLS} for v in old_rows])
        if names:
            await conn.execute(insert_ignore(conn, contact_field_names, ["workspace_id", "name"]),
                               [{"workspace_id": self.ws, "name": n} for n in sorted(names)])
        # A new contact's memberships cannot exist yet; a stored one's may have been added by
        # another writer since they were read.
        if links[0]:
            await insert_many(conn, contact_categories, _LINK_COLS, links[0], copy=True)
        if links[1]:
            await insert_many(conn, contact_categories, _LINK_COLS, links[1], ignore=_LINK_COLS)


_LINK_COLS = ("contact_id", "category_id")
_INSERT_COLS = ("id", "workspace_id", "external_id", "phone", "email", "first_name", "last_name",
                "fields", "language", "created_at", "updated_at")


def new_ids(n: int) -> list[str]:
    """n time-ordered UUIDs (version 7: milliseconds, then random bits counted up within the
    batch). Increasing keys are appended to the primary key and membership indexes instead
    of landing on random pages: on SQLite, inserting a category membership for a random
    (version 4) id cost ~50 µs once the index outgrew the page cache, ~2 µs for these."""
    ms = time.time_ns() // 1_000_000
    start = int.from_bytes(os.urandom(10), "big") >> 8  # 72 random bits: room to count up
    return uuid7_texts(ms, start, n)


def uuid7_texts(ms: int, start: int, n: int) -> list[str]:
    """The ids of new_ids: counter value v = start + k in the 12 bits after the version and
    the 62 after the variant. Only the last group (v's low 48 bits) changes from one id to
    the next within a run, so the others are formatted once per run."""
    out: list[str] = []
    v, end = start, start + n
    while v < end:
        stop = min(end, (v | 0xFFFFFFFFFFFF) + 1)  # the next change of v's bits above 48
        h = f"{(ms << 16) | (7 << 12) | ((v >> 62) & 0xFFF):016x}"
        head = f"{h[:8]}-{h[8:12]}-{h[12:]}-{0x8000 | ((v >> 48) & 0x3FFF):04x}-"
        out.extend([f"{head}{x & 0xFFFFFFFFFFFF:012x}" for x in range(v, stop)])
        v = stop
    return out


_PG_ARRAY = {"fields": "text"}  # JSON travels as text, cast in the SELECT
_PG_CAST = {"fields": "::json"}


async def insert_many(conn: AsyncConnection, table: Any, cols: tuple[str, ...],
                       rows: list[tuple[Any, ...]], ignore: tuple[str, ...] = (),
                       copy: bool = False) -> None:
    """All rows in one go, converted beforehand to what the driver takes: on PostgreSQL one
    INSERT ... SELECT FROM unnest(<one array per column>) (planned once for the batch; an
    executemany is planned per row under plan_cache_mode=force_custom_plan), or with copy
    (rows that never conflict) a binary COPY, on SQLite one prepared INSERT run over the
    rows (executemany)."""
    names = ", ".join(cols)
    tail = f" ON CONFLICT ({', '.join(ignore)}) DO NOTHING" if ignore else ""
    if conn.dialect.name == "postgresql":
        if copy and not ignore and await _copy(conn, table, cols, rows):
            return
        arrays = ", ".join(f"${i}::{_PG_ARRAY.get(c) or _pg_type(table.c[c].type)}[]"
                           for i, c in enumerate(cols, 1))
        picked = ", ".join(f"{c}{_PG_CAST.get(c, '')}" for c in cols)
        sql = (f"INSERT INTO {table.name} ({names}) SELECT {picked} "
               f"FROM unnest({arrays}) AS t({names}){tail}")
        await conn.exec_driver_sql(sql, tuple(list(col) for col in zip(*rows, strict=True)))
        return
    marks = ", ".join("?" for _ in cols)
    await conn.exec_driver_sql(f"INSERT INTO {table.name} ({names}) VALUES ({marks}){tail}", rows)


async def _copy(conn: AsyncConnection, table: Any, cols: tuple[str, ...],
                rows: list[tuple[Any, ...]]) -> bool:
    """Rows through asyncpg's binary COPY in the connection's transaction: the INSERT's
    arrays cost the service ~10 µs a contact to encode, COPY's records ~3 µs, and the server
    less too. False (nothing done) when no transaction is open yet: the COPY would commit
    on its own. A constraint violation is the IntegrityError an INSERT would raise."""
    driver = (await conn.get_raw_connection()).driver_connection
    if driver is None or not driver.is_in_transaction():
        return False
    try:
        await driver.copy_records_to_table(table.name, records=rows, columns=list(cols))
    except Exception as exc:
        if str(getattr(exc, "sqlstate", "")).startswith("23"):  # integrity constraint class
            raise IntegrityError(f"COPY {table.name}", None, exc) from exc
        raise
    return True


def _pg_type(sa_type: Any) -> str:
    if isinstance(sa_type, DateTime):
        return "timestamptz" if sa_type.timezone else "timestamp"
    return "text"


async def categories_by_name(engine: AsyncEngine, ws: str, names: list[str]) -> dict[str, str]:
    """{name: id} of the workspace's categories with these names."""
    out: dict[str, str] = {}
    async with engine.connect() as conn:
        for part in chunks(names):
            res = await conn.execute(select(categories.c.name, categories.c.id).where(
                categories.c.workspace_id == ws, categories.c.name.in_(part)))
            out.update((name, cid) for name, cid in res)
    return out


# --- progress under request_id ---------------------------------------------------------------
_MAGIC = b"HIMP1"


@dataclass
class Progress:
    """Where an import with a request_id stands: rows committed, the digest of the stream up
    to them, whether the stream ended, and the answer so far."""

    position: int = 0
    digest: str = ""
    done: bool = False
    response: pb.ImportContactsResponse = field(default_factory=pb.ImportContactsResponse)
    fingerprint: str = ""

    def pack(self) -> bytes:
        head = json.dumps({"position": self.position, "digest": self.digest,
                           "done": self.done}).encode()
        return _MAGIC + struct.pack(">I", len(head)) + head + self.response.SerializeToString()

    @classmethod
    def unpack(cls, blob: bytes, fingerprint: str) -> Progress:
        n = struct.unpack(">I", blob[len(_MAGIC):len(_MAGIC) + 4])[0]
        start = len(_MAGIC) + 4
        head = json.loads(blob[start:start + n])
        resp = pb.ImportContactsResponse()
        resp.ParseFromString(blob[start + n:])
        return cls(head["position"], head["digest"], head["done"], resp, fingerprint)


def _key(ws: str, request_id: str) -> list[Any]:
    return [idempotency.c.workspace_id == ws, idempotency.c.method == METHOD,
            idempotency.c.request_id == request_id]


async def load_progress(engine: AsyncEngine, ws: str, request_id: str) -> Progress | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(idempotency.c.response, idempotency.c.fingerprint)
                                  .where(*_key(ws, request_id)))).first()
    return None if row is None else Progress.unpack(row.response, row.fingerprint or "")


async def save_progress(conn: AsyncConnection, ws: str, request_id: str, expected: Progress | None,
                        new: Progress, now: Any) -> None:
    """Records `new` in the transaction that wrote its rows, provided the record is still
    `expected` (None: no record yet); else another import with this request_id is running."""
    q = select(idempotency.c.response).where(*_key(ws, request_id))
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()
    row = (await conn.execute(q)).first()
    current = None if row is None else Progress.unpack(row.response, "")
    if (current is None) != (expected is None) or (
            current is not None and expected is not None and current.position != expected.position):
        raise HeraldError(grpc.StatusCode.ABORTED, f"another import with request_id "
                                                   f"{request_id!r} is running; retry after it ends")
    if current is None:
        await conn.execute(insert(idempotency).values(
            workspace_id=ws, method=METHOD, request_id=request_id, response=new.pack(),
            created_at=now, fingerprint=new.fingerprint or None))
    else:
        await conn.execute(update(idempotency).where(*_key(ws, request_id)).values(
            response=new.pack()))
