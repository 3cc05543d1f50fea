"""SQL helpers of the recipients store that differ by dialect (SQLite, PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

IN_CHUNK = 500  # bound parameters per IN (...) list


def new_id() -> str:
    return str(uuid.uuid4())


def chunks(items: Sequence[Any], size: int = IN_CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


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
