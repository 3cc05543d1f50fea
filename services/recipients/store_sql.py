"""SQL helpers of the recipients store that differ by dialect (SQLite, PostgreSQL)."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import String, any_, bindparam, event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

IN_CHUNK = 500  # bound parameters per IN (...) list


def new_id() -> str:
    return str(uuid.uuid4())


def chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _sqlite_has_json() -> bool:
    try:
        with sqlite3.connect(":memory:") as probe:
            return probe.execute("SELECT value FROM json_each('[\"a\"]')").fetchone() == ("a",)
    except sqlite3.Error:
        return False


_SQLITE_JSON = _sqlite_has_json()


def key_filters(conn: AsyncConnection, col: Any, keys: Sequence[str]) -> Iterator[Any]:
    """Conditions `col` among keys, one per query, the keys bound as one parameter (an IN list
    is rendered and bound key by key: ~1 µs a key in SQLAlchemy): `= ANY(array)` on
    PostgreSQL, `IN (SELECT value FROM json_each(?))` on SQLite (all the keys at once: its
    plan is the same key index for any number); IN lists of IN_CHUNK keys on a SQLite built
    without JSON functions."""
    if not keys:
        return
    if conn.dialect.name == "postgresql":
        # Still IN_CHUNK keys a query: the planner sees as many keys as it always has.
        for part in chunks(keys):
            yield col == any_(bindparam("keys", list(part), type_=postgresql.ARRAY(String)))
        return
    if _SQLITE_JSON:
        keyset = func.json_each(bindparam("keys", json.dumps(list(keys)))).table_valued("value")
        yield col.in_(select(keyset.c.value))
        return
    for part in chunks(keys):
        yield col.in_(part)


def insert_ignore(conn: AsyncConnection, table: Any, keys: list[str]) -> Any:
    """INSERT ... ON CONFLICT (keys) DO NOTHING on either dialect."""
    mod = postgresql if conn.dialect.name == "postgresql" else sqlite
    return mod.insert(table).on_conflict_do_nothing(index_elements=keys)


def sqlite_immediate(engine: AsyncEngine) -> None:
    """Write transactions on SQLite start with BEGIN IMMEDIATE: a deferred transaction that
    reads and then writes fails at once (SQLITE_BUSY, no busy wait) if another writer
    committed in between; taking the write lock up front makes it wait instead."""

    @event.listens_for(engine.sync_engine, "connect")
    def _autocommit_driver(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("herald_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def pg_custom_plans(engine: AsyncEngine) -> None:
    """asyncpg prepares every statement, and after five runs PostgreSQL may settle on a
    generic plan made while the tables were small: a sequential scan testing each row
    against a 500-value IN list took seconds per query at 10k contacts. Custom plans cost
    a little planning per query and always use the key indexes."""

    @event.listens_for(engine.sync_engine, "connect")
    def _custom_plans(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("SET plan_cache_mode = force_custom_plan")
        cur.close()
