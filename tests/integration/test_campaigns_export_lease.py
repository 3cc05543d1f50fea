"""An export whose builder died mid-build (the process killed: no failure path ran) does not
stay RUNNING: once its lease runs out, the next exports pass of any replica drops the partial
file and builds it again, byte-identical to an uninterrupted build; two replicas racing for it
build it once; a builder that stalled past its lease stops writing when another replica took
over; a live builder (renewing its lease) is left alone; after 3 interrupted builds the export
is FAILED with an error that says so and what to do. Both backends, real SQL and gRPC."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from herald.v1 import campaigns_pb2 as pb
from prometheus_client import REGISTRY
from sqlalchemy import insert

from services.campaigns import exports
from services.campaigns.repo import exports as exports_repo
from services.campaigns.scheduler import Scheduler
from services.campaigns.schema import export_chunks
from services.campaigns.schema import exports as exports_table
from tests.integration.campaigns_harness import Harness, sms, tick
from tests.integration.test_campaigns_export_chunks import (
    WS,
    chunk_count,
    download,
    seed,
    single_pass,
)

N = 23
LEASE = 10.0  # the harness's scheduler lease (Scheduler's default)


class ProcessDied(BaseException):
    """The build's process is gone: nothing after this point of the build runs (no failure
    path, no give-back), as after kill -9, an OOM kill or a node loss."""


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exports, "BATCH", 5)  # 23 rows -> a header chunk and 5 row chunks


def die_after(monkeypatch: pytest.MonkeyPatch, chunks: int) -> None:
    """The next builds die while rendering their row chunk number chunks + 1."""
    real, calls = exports.render_rows, []

    def dying(rows: list[Any], fmt: int, names: list[str]) -> bytes:
        calls.append(1)
        if len(calls) % (chunks + 1) == 0:
            raise ProcessDied()
        return real(rows, fmt, names)

    monkeypatch.setattr(exports, "render_rows", dying)


class Gate:
    """Holds a build before reading its row batches number `at` (of the file's pass) until
    released: a builder slow enough for its lease to matter."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, at: set[int]) -> None:
        self.real, self.at, self.calls = exports_repo.matching_batch, at, 0
        self.held, self.go = asyncio.Event(), asyncio.Event()
        monkeypatch.setattr(exports_repo, "matching_batch", self.batch)

    async def batch(self, conn: Any, *args: Any, **kw: Any) -> Any:
        if kw.get("upto") is not None:
            self.calls += 1
            if self.calls in self.at:
                self.held.set()
                await self.go.wait()
                self.go.clear()
        return await self.real(conn, *args, **kw)

    async def reached(self) -> None:
        await asyncio.wait_for(self.held.wait(), 10)
        self.held.clear()

    def release(self) -> None:
        self.at = set()
        self.go.set()


def replica(h: Harness, name: str) -> Scheduler:
    """Another campaigns replica on the same database."""
    return Scheduler(h.store, h.scheduler.js, h.scheduler.recipients, clock=h.clock, owner=name,
                     lease=LEASE, max_payload=h.nc.max_payload)


def built() -> float:
    """Exports this process finished building (every replica of a test shares the counter)."""
    return REGISTRY.get_sample_value("herald_campaigns_exports_total", {"result": "done"}) or 0.0


async def get(h: Harness, export_id: str) -> pb.Export:
    return await h.stub.GetExport(pb.GetExportRequest(id=export_id), metadata=WS)


async def campaign_with_rows(h: Harness) -> str:
    cp = await h.stub.CreateCampaign(sms(1), metadata=WS)
    await seed(h, cp.id)
    return cp.id


async def create(h: Harness, cid: str) -> str:
    return (await h.stub.CreateExport(pb.CreateExportRequest(campaign_id=cid), metadata=WS)).id


async def killed_build(h: Harness, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """An export whose builder (replica A, the harness's scheduler) died with the header and 2
    chunks written: (campaign id, export id)."""
    cid = await campaign_with_rows(h)
    export_id = await create(h, cid)
    with monkeypatch.context() as m:
        die_after(m, 2)
        with pytest.raises(ProcessDied):
            await tick(h.scheduler)
    assert await chunk_count(h, export_id) == 3
    return cid, export_id


async def gated_build(h: Harness, monkeypatch: pytest.MonkeyPatch,
                      at: set[int]) -> tuple[str, str, Gate, asyncio.Task]:
    """Replica A building an export, held before its row batch number min(at):
    (campaign id, export id, the gate, A's exports pass)."""
    cid = await campaign_with_rows(h)
    export_id = await create(h, cid)
    gate = Gate(monkeypatch, at)
    a = asyncio.create_task(replica(h, "replica-a").run_exports(h.clock.now(), True))
    await gate.reached()
    return cid, export_id, gate, a


async def assert_whole_file(h: Harness, cid: str, export_id: str, attempts: int) -> pb.Export:
    """DONE, byte-identical to a single-pass render, one header and 5 row chunks."""
    done = await get(h, export_id)
    assert done.status == pb.EXPORT_STATUS_DONE and done.rows == N, done
    assert done.attempts == attempts and done.error == ""
    assert await download(h, export_id) == await single_pass(h, cid)
    assert await chunk_count(h, export_id) == 6
    return done


async def test_build_killed_mid_way_is_rebuilt_by_another_replica(
        h: Harness, small_batches: None, monkeypatch: pytest.MonkeyPatch) -> None:
    cid, export_id = await killed_build(h, monkeypatch)
    b = replica(h, "replica-b")
    h.clock.advance(LEASE / 2)  # A's lease still runs: B leaves the export alone
    await b.run_exports(h.clock.now(), True)
    assert (await get(h, export_id)).status == pb.EXPORT_STATUS_RUNNING
    assert await chunk_count(h, export_id) == 3
    h.clock.advance(LEASE)
    stalled = await get(h, export_id)
    assert stalled.status == pb.EXPORT_STATUS_RUNNING
    await b.run_exports(h.clock.now(), True)
    done = await assert_whole_file(h, cid, export_id, attempts=2)
    assert "build stopped" in stalled.status_detail and "attempt 2 of 3" in stalled.status_detail
    assert done.status_detail.startswith("ready: 23 rows")


async def test_running_export_from_before_leases_is_rebuilt(h: Harness, small_batches: None) -> None:
    """A RUNNING row with no lease (built by a version without them) and a partial file."""
    cid = await campaign_with_rows(h)
    now = h.clock.now()
    async with h.engine.begin() as conn:
        await conn.execute(insert(exports_table).values(
            id="old-running", campaign_id=cid, workspace_id="wx", format=pb.EXPORT_FORMAT_CSV,
            status=pb.EXPORT_STATUS_RUNNING, created_at=now - timedelta(days=1)))
        await conn.execute(insert(export_chunks), [
            dict(export_id="old-running", seq=seq, data=b"stale,partial\n") for seq in range(3)])
    await h.ticks(1.2)
    await assert_whole_file(h, cid, "old-running", attempts=1)


async def test_two_replicas_take_over_a_dead_build_once(
        h: Harness, small_batches: None, monkeypatch: pytest.MonkeyPatch) -> None:
    cid, export_id = await killed_build(h, monkeypatch)
    h.clock.advance(LEASE + 1)
    before = built()
    await asyncio.gather(*[replica(h, name).run_exports(h.clock.now(), True) for name in ("b", "c")])
    assert (await get(h, export_id)).status == pb.EXPORT_STATUS_DONE and built() - before == 1
    await assert_whole_file(h, cid, export_id, attempts=2)


async def test_stalled_builder_stops_writing_once_taken_over(
        h: Harness, small_batches: None, monkeypatch: pytest.MonkeyPatch) -> None:
    cid, export_id, gate, a = await gated_build(h, monkeypatch, {2})  # header and one chunk
    h.clock.advance(LEASE + 1)
    await replica(h, "replica-b").run_exports(h.clock.now(), True)
    await assert_whole_file(h, cid, export_id, attempts=2)
    before = built()
    gate.release()  # A wakes up: its next chunk finds the export is not its own any more
    await asyncio.wait_for(a, 10)
    assert built() == before
    await assert_whole_file(h, cid, export_id, attempts=2)


async def test_live_builder_renews_its_lease_and_is_not_taken_over(
        h: Harness, small_batches: None, monkeypatch: pytest.MonkeyPatch) -> None:
    cid, export_id, gate, a = await gated_build(h, monkeypatch, {2, 4})
    h.clock.advance(LEASE * 0.6)
    gate.go.set()  # two more chunks written: the lease is renewed from here
    await gate.reached()
    h.clock.advance(LEASE * 0.6)  # past the first lease, within the renewed one
    running = await get(h, export_id)
    await replica(h, "replica-b").run_exports(h.clock.now(), True)
    assert (await get(h, export_id)).attempts == 1
    gate.release()
    await asyncio.wait_for(a, 10)
    await assert_whole_file(h, cid, export_id, attempts=1)
    assert running.status == pb.EXPORT_STATUS_RUNNING and running.rows == 15
    assert running.status_detail == "being built: 15 rows written (attempt 1 of 3)"


async def test_export_interrupted_three_times_fails_with_the_reason(
        h: Harness, small_batches: None, monkeypatch: pytest.MonkeyPatch) -> None:
    cid = await campaign_with_rows(h)
    export_id = await create(h, cid)
    b = replica(h, "replica-b")
    with monkeypatch.context() as m:
        die_after(m, 1)
        with pytest.raises(ProcessDied):
            await tick(h.scheduler)
        for _ in range(2):  # B takes over and dies too, twice
            h.clock.advance(LEASE + 1)
            with pytest.raises(ProcessDied):
                await b.run_exports(h.clock.now(), True)
    h.clock.advance(LEASE + 1)
    await b.run_exports(h.clock.now(), True)
    failed = await get(h, export_id)
    assert failed.status == pb.EXPORT_STATUS_FAILED, failed
    assert "interrupted 3 times" in failed.error and "Create the export again" in failed.error
    assert "memory" in failed.error and failed.attempts == 3
    assert failed.status_detail == f"failed: {failed.error}"
    assert await chunk_count(h, export_id) == 0
    errors = await h.stub.ListJobErrors(pb.ListJobErrorsRequest(campaign_id=cid), metadata=WS)
    assert any(e.stage == "export" and "interrupted 3 times" in e.message for e in errors.errors)


async def test_cancelled_build_gives_the_export_back(
        h: Harness, small_batches: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A replica stopping (its task cancelled mid-build) hands the export back at once."""
    cid, export_id, gate, a = await gated_build(h, monkeypatch, {2})
    a.cancel()
    with pytest.raises(asyncio.CancelledError):
        await a
    back = await get(h, export_id)
    assert back.status == pb.EXPORT_STATUS_QUEUED and back.attempts == 0
    assert await chunk_count(h, export_id) == 0
    gate.release()
    await replica(h, "replica-b").run_exports(h.clock.now(), True)
    await assert_whole_file(h, cid, export_id, attempts=1)


async def test_an_export_running_at_the_upgrade_gets_a_rollout_grace(
        tmp_path: Any, request: pytest.FixtureRequest) -> None:
    """An export RUNNING when migration 0015 runs may still be built by a pod of the previous
    release (which writes no lease): it is taken over only once ROLLOUT_GRACE has passed."""
    from datetime import UTC, datetime

    from alembic import command
    from sqlalchemy import select, text

    from shared import db
    from tests.integration.campaigns_harness import MIGRATIONS

    grace = 15 * 60
    for url in (f"sqlite+aiosqlite:///{tmp_path / 'e.db'}", request.getfixturevalue("empty_pg_url")):
        await asyncio.to_thread(command.upgrade, db.alembic_config(MIGRATIONS, url), "0014")
        eng = db.make_engine(url)
        try:
            async with eng.begin() as conn:
                for export_id, status in (("building", pb.EXPORT_STATUS_RUNNING), ("done", pb.EXPORT_STATUS_DONE)):
                    await conn.execute(text(
                        "INSERT INTO exports (id, campaign_id, workspace_id, format, status, created_at) "
                        "VALUES (:id, 'cp', 'wx', 1, :status, :at)").bindparams(
                            id=export_id, status=status, at=datetime(2026, 11, 30, tzinfo=UTC)))
            migrated = datetime.now(UTC)
            await db.migrate(MIGRATIONS, url)
            async with eng.connect() as conn:
                rows = {r["id"]: r for r in (await conn.execute(select(exports_table))).mappings()}
                assert rows["building"]["lease_owner"] == "previous-release"
                until = rows["building"]["lease_until"]
                until = until if until.tzinfo else until.replace(tzinfo=UTC)
                assert abs((until - migrated).total_seconds() - grace) < 60
                assert rows["done"]["lease_until"] is None
                assert await exports_repo.list_stale(conn, migrated + timedelta(seconds=grace - 60)) == []
                assert await exports_repo.list_stale(conn, migrated + timedelta(seconds=grace + 60)) == ["building"]
        finally:
            await eng.dispose()
