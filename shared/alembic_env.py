"""Shared body of every service's Alembic env.py (async engines, one version table per
service so several services may share one PostgreSQL database). An online upgrade runs under
the schema's migration lock (shared.db.migration_lock): concurrent migrators take turns, and
the later ones read the version table only once the first is done, so they find it at head."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from shared import db


def run(metadata: MetaData, version_table: str) -> None:
    cfg = context.config
    url = cfg.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, version_table=version_table,
                          literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return

    def do_run(conn: Connection) -> None:
        context.configure(connection=conn, target_metadata=metadata, version_table=version_table,
                          render_as_batch=conn.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn, db.migration_lock(conn, version_table, url):
                await conn.run_sync(do_run)
                await conn.commit()
        finally:
            await engine.dispose()

    asyncio.run(main())
