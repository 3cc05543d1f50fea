"""SQL engine factory (SQLite file by default, PostgreSQL by DSN) and Alembic upgrades."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from shared import config

log = logging.getLogger("herald.db")

MIGRATE_LOCK_TIMEOUT = config.setting(
    "HERALD_MIGRATE_LOCK_TIMEOUT", "900",
    "Seconds a migration (`migrate`, or a service's own at start-up) waits for another "
    "migration of the same service schema to finish before it gives up and exits with an "
    "error. Migrators of one schema take turns on a database lock (a PostgreSQL advisory lock; "
    "a lock file next to a SQLite database): the later ones find the schema at head and do "
    "nothing.",
    "campaigns, recipients",
)

SQLITE_CACHE_MIB = config.setting(
    "HERALD_SQLITE_CACHE_MIB", "16",
    "SQLite only: page cache per database connection, in MiB (SQLite's own default is 2). "
    "The ledger's status updates and the build's inserts touch several indexes per message; "
    "with 2 MiB most of those pages are read again from the file on every batch (measured, "
    "100,000 SMS end to end: 16 MiB took 6 % less CPU in the campaigns service and 4 % less "
    "in all; 64 MiB was no better and cost 80 MiB more memory). A service holds up to 15 "
    "connections, each filling its cache only as far as it needs.",
    "campaigns, recipients",
)


def db_url(service: str, url: str | None = None) -> str:
    return (url or config.DB_URL.get()).replace("{service}", service)


def make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        cache_kib = max(SQLITE_CACHE_MIB.get_int(), 1) * 1024

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            # WAL lets readers (List RPCs) run while the ledger consumer writes.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA cache_size=-{cache_kib}")
            cur.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def migration_lock_key(version_table: str) -> int:
    """The PostgreSQL advisory lock key of one service schema: a fixed signed 64-bit number,
    the same in every pod and release (it is derived from the schema's version table)."""
    digest = hashlib.blake2b(f"herald:migrate:{version_table}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class MigrationLockTimeout(RuntimeError):
    """Another migration of the same schema held the lock for longer than the timeout."""


@contextlib.asynccontextmanager
async def migration_lock(conn: AsyncConnection, version_table: str, url: str,
                         timeout: float | None = None) -> AsyncIterator[None]:
    """Hold the schema's migration lock around an Alembic upgrade run on `conn`.

    PostgreSQL: a session-level advisory lock taken on the very connection that migrates, so
    it lasts across the migration's transactions and dies with the session if the process
    does. Without it, concurrent runners each saw an empty schema and raced to create the
    same tables and types (pg_type_typname_nsp_index violations). SQLite: an exclusive lock
    on `<database>.migrate-lock` (flock, released by the kernel if the process dies); a
    separate file, because closing any descriptor of the database file itself would drop
    SQLite's own locks."""
    wait = MIGRATE_LOCK_TIMEOUT.get_float() if timeout is None else timeout
    deadline = time.monotonic() + wait
    if conn.dialect.name == "postgresql":
        key = migration_lock_key(version_table)
        await _poll(lambda: _pg_try_lock(conn, key), deadline, version_table, wait)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):  # else it ends with the session
                await conn.rollback()
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                await conn.commit()
        return
    path = url.split("///", 1)[-1] if conn.dialect.name == "sqlite" else ""
    if not path or path == ":memory:" or path.startswith("file::memory:"):
        yield  # a private in-memory database has a single migrator by construction
        return
    fd = os.open(f"{path}.migrate-lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        await _poll(lambda: _flock(fd), deadline, version_table, wait)
        yield
    finally:
        os.close(fd)  # releases the flock


async def _pg_try_lock(conn: AsyncConnection, key: int) -> bool:
    got = (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})).scalar()
    await conn.commit()  # the lock is the session's: it outlives this transaction
    return bool(got)


async def _flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


async def _poll(try_lock: Callable[[], Awaitable[bool]], deadline: float, version_table: str,
                wait: float) -> None:
    """Try the lock until it is ours; say once that we are waiting (an operator watching a
    rollout sees why a pod has not started yet)."""
    waiting = False
    while not await try_lock():
        if time.monotonic() >= deadline:
            raise MigrationLockTimeout(
                f"another migration of {version_table} still holds the migration lock after "
                f"{wait:g} s ({MIGRATE_LOCK_TIMEOUT.name})")
        if not waiting:
            log.info("another migration is running; waiting for it to finish",
                     extra={"version_table": version_table})
            waiting = True
        await asyncio.sleep(0.2)


def alembic_config(migrations_dir: str, url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", migrations_dir)
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


async def migrate(migrations_dir: str, url: str) -> None:
    """Apply migrations to head under the schema's migration lock (taken in env.py, see
    migration_lock), so replicas starting together take turns. Runs Alembic in a thread:
    its async env.py calls asyncio.run, which cannot nest inside the service's running loop."""
    cfg = alembic_config(migrations_dir, url)
    await asyncio.to_thread(command.upgrade, cfg, "head")
    log.info("database at head", extra={"migrations": os.path.basename(os.path.dirname(migrations_dir))})


def migrate_command(service: str, migrations_dir: str, argv: list[str]) -> bool:
    """`python -m services.<name> migrate [REVISION]`: apply migrations and exit (for a
    rollout step or an init container; several may run at once, they take turns on the
    migration lock). Returns False when argv asks for something else."""
    if not argv or argv[0] != "migrate":
        return False
    url = db_url(service)
    target = argv[1] if len(argv) > 1 else "head"
    try:
        command.upgrade(alembic_config(migrations_dir, url), target)
    except MigrationLockTimeout as exc:
        print(f"{service}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"{service}: migrations applied up to {target} ({url.split('://', 1)[0]})")
    return True
