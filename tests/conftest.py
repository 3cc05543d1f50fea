"""Session-wide real servers: a private nats-server (JetStream) and redis-server on free
ports, and a throwaway PostgreSQL database on the running server. A missing server is
a failure, never a skip.

`make test` runs the suite on two pytest-xdist workers (`--dist loadfile`: a module's tests
stay on one worker, so its module-scoped stack starts once). Each worker is a session of
its own: its own servers, its own uuid-named databases, its own tmp_path tree; a package-
or session-scoped stack (tests/chaos, tests/contract) starts on each worker that runs
one of its modules."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli import procs

PG_ADMIN_DSN = os.environ.get("HERALD_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
# Where a process that was not given HERALD_NATS_URL / HERALD_REDIS_URL would go: a closed
# loopback port, never the machine's shared NATS (4222) or Redis (6379).
NOWHERE = {"HERALD_NATS_URL": "nats://127.0.0.1:1", "HERALD_REDIS_URL": "redis://127.0.0.1:1/0"}


def pytest_configure(config: pytest.Config) -> None:
    # Before the xdist workers start, so they and every process they spawn inherit it.
    os.environ.update(NOWHERE)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def nats_server(workdir: Path) -> Iterator[procs.Proc]:
    proc = procs.start_nats(workdir / "nats")
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def redis_server(workdir: Path) -> Iterator[procs.Proc]:
    proc = procs.start_redis(workdir / "redis")
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def nats_url(nats_server: procs.Proc) -> str:
    return str(nats_server.info["url"])


@pytest.fixture(scope="session")
def redis_url(redis_server: procs.Proc) -> str:
    return str(redis_server.info["url"])


async def _pg_admin_async(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _pg_admin(sql: str) -> None:
    # Own loop in a thread: the fixture stays synchronous, so async fixtures and
    # request.getfixturevalue() can both use it.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _pg_admin_async(sql)).result()


def pg_database(prefix: str) -> Iterator[str]:
    """URL of a new empty PostgreSQL database, dropped when the generator closes."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        _pg_admin(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # loud: CI must not pass without PostgreSQL
        pytest.fail(f"PostgreSQL not reachable at {PG_ADMIN_DSN}: {exc}")
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    yield f"{base}/{name}"
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database, dropped at the end of the session."""
    yield from pg_database("herald_test")


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    """A new empty PostgreSQL database for one test."""
    yield from pg_database("herald_empty")


@pytest.fixture
async def js(nats_url: str):  # type: ignore[no-untyped-def]
    """A JetStream context on the private server with both streams created."""
    from shared import bus

    nc = await bus.connect(nats_url)
    ctx = nc.jetstream()
    await bus.ensure_streams(ctx)
    yield ctx
    await nc.close()


@pytest.fixture
async def redis_client(redis_url: str):  # type: ignore[no-untyped-def]
    from shared import cache

    client = cache.connect(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A brand-new empty database per test, on each backend (services must pass on both)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
        return
    yield from pg_database("herald_fresh")
