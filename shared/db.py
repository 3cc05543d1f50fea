"""SQL engine factory (SQLite file by default, PostgreSQL by DSN) and Alembic upgrades."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared import config

log = logging.getLogger("herald.db")


def db_url(service: str, url: str | None = None) -> str:
    return (url or config.DB_URL.get()).replace("{service}", service)


def make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            # WAL lets readers (List RPCs) run while the ledger consumer writes.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def alembic_config(migrations_dir: str, url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", migrations_dir)
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


async def migrate(migrations_dir: str, url: str) -> None:
    """Apply migrations to head. Runs Alembic in a thread: its async env.py calls
    asyncio.run, which cannot nest inside the service's running loop."""
    cfg = alembic_config(migrations_dir, url)
    await asyncio.to_thread(command.upgrade, cfg, "head")
    log.info("database at head", extra={"migrations": os.path.basename(os.path.dirname(migrations_dir))})


def migrate_command(service: str, migrations_dir: str, argv: list[str]) -> bool:
    """`python -m services.<name> migrate [REVISION]`: apply migrations and exit (for a
    rollout step or an init container). Returns False when argv asks for something else."""
    if not argv or argv[0] != "migrate":
        return False
    url = db_url(service)
    target = argv[1] if len(argv) > 1 else "head"
    command.upgrade(alembic_config(migrations_dir, url), target)
    print(f"{service}: migrations applied up to {target} ({url.split('://', 1)[0]})")
    return True
