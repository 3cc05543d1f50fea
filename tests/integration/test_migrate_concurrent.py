"""Several pods running `python -m services.<name> migrate` against one empty database at the
same time (a rollout's init containers) all succeed and leave the schema at head: the
migrators take turns on a database lock instead of racing to create the same types."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from shared import db

ROOT = Path(__file__).resolve().parents[2]
RUNNERS = 3


def migrate_concurrently(service: str, url: str) -> list[subprocess.CompletedProcess[str]]:
    env = {**os.environ, "HERALD_DB_URL": url, "HERALD_LOG_FORMAT": "text"}
    runners = [subprocess.Popen([sys.executable, "-m", f"services.{service}", "migrate"], cwd=ROOT,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True)
               for _ in range(RUNNERS)]
    done = []
    for p in runners:
        out, _ = p.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, None))
    return done


async def schema_revision(url: str, service: str) -> str:
    engine = db.make_engine(url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text(f"SELECT version_num FROM alembic_version_{service}"))).all()
    finally:
        await engine.dispose()
    assert len(rows) == 1, rows
    return str(rows[0][0])


def head(service: str) -> str:
    migrations = str(ROOT / "services" / service / "migrations")
    found = ScriptDirectory.from_config(db.alembic_config(migrations, "")).get_current_head()
    assert found
    return found


def check(service: str, url: str) -> None:
    results = migrate_concurrently(service, url)
    for r in results:
        assert r.returncode == 0, r.stdout[-3000:]
    assert asyncio.run(schema_revision(url, service)) == head(service)


@pytest.mark.pg
@pytest.mark.parametrize("service", ["campaigns", "recipients"])
def test_concurrent_migrations_on_empty_postgresql(service: str, empty_pg_url: str) -> None:
    check(service, empty_pg_url)


@pytest.mark.pg
def test_migrate_waits_for_the_lock_holder_and_gives_up_after_the_timeout(empty_pg_url: str) -> None:
    async def holding_the_lock() -> subprocess.CompletedProcess[str]:
        holder = db.make_engine(empty_pg_url)
        async with holder.connect() as conn:
            key = db.migration_lock_key("alembic_version_campaigns")
            await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            await conn.commit()
            env = {**os.environ, "HERALD_DB_URL": empty_pg_url, "HERALD_MIGRATE_LOCK_TIMEOUT": "1"}
            done = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "services.campaigns", "migrate"], cwd=ROOT,
                env=env, capture_output=True, text=True, timeout=60)
        await holder.dispose()
        return done

    done = asyncio.run(holding_the_lock())
    assert done.returncode == 1
    assert "still holds the migration lock after 1 s (HERALD_MIGRATE_LOCK_TIMEOUT)" in done.stderr
    check_tables = asyncio.run(table_count(empty_pg_url))
    assert check_tables == 0  # it waited: nothing was created under the holder's feet


async def table_count(url: str) -> int:
    engine = db.make_engine(url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(text(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"))).scalar())
    finally:
        await engine.dispose()


def test_concurrent_migrations_on_empty_sqlite(tmp_path: Path) -> None:
    check("campaigns", f"sqlite+aiosqlite:///{tmp_path / 'campaigns.db'}")
