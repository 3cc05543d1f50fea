"""Shared body of every service's Alembic env.py (async engines, one version table per
service so several services may share one PostgreSQL database)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


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
        async with engine.connect() as conn:
            await conn.run_sync(do_run)
            await conn.commit()
        await engine.dispose()

    asyncio.run(main())
