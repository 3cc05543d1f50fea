"""The ledger applies events forwards only and counts each open/click once, on both backends;
receipts the SMPP gateway could not match are matched against the ledger (by provider id and
handset) and reach the ledger and the real stats process as the message's outcome."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from herald.v1 import stats_pb2 as spb
from herald.v1 import stats_pb2_grpc as sgrpc
from prometheus_client import REGISTRY
from sqlalchemy import insert, select

from cli import procs
from services.campaigns.ledger import Ledger, apply_batch
from services.campaigns.receipt_match import FINAL_STATS, same_number
from services.campaigns.schema import messages
from services.campaigns.store import Store
from shared import bus, db, states
from shared.timeutil import to_ts

MIGRATIONS = os.path.join(os.path.dirname(__file__), "../../services/campaigns/migrations")
S = c.MessageStatus
K = e.MessageEventKind


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path):  # type: ignore[no-untyped-def]
    url = (f"sqlite+aiosqlite:///{tmp_path / 'l.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    await db.migrate(MIGRATIONS, url)
    eng = db.make_engine(url)
    yield eng
    await eng.dispose()


def ev(kind: int, mid: str, **kw: object) -> e.MessageEvent:
    return e.MessageEvent(kind=kind, message_id=mid, status=states.KIND_STATUS.get(kind, 0),
                          occurred_at=to_ts(datetime.now(UTC)), **kw)


async def test_forward_only_and_counted_once(engine, request: pytest.FixtureRequest) -> None:  # type: ignore[no-untyped-def]
    mid = f"m-{request.node.callspec.id}-{os.urandom(4).hex()}"
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(insert(messages).values(
            id=mid, campaign_id="c1", workspace_id="w", address="+447700900123",
            channel=c.CHANNEL_SMS, status=S.MESSAGE_STATUS_SENDING, status_rank=1, fields={},
            created_at=now))
    batch = [
        ev(K.MESSAGE_EVENT_KIND_DELIVERED, mid, carrier_result="DELIVRD"),
        ev(K.MESSAGE_EVENT_KIND_SUBMITTED, mid, provider_message_id="abc"),  # late: stale
        ev(K.MESSAGE_EVENT_KIND_REPLIED, mid, event_id=f"{mid}-r1"),
        ev(K.MESSAGE_EVENT_KIND_REPLIED, mid, event_id=f"{mid}-r1"),  # redelivered
        ev(K.MESSAGE_EVENT_KIND_FAILED, mid, error_code="0x0000000B"),  # after final: stale
    ]
    async with engine.begin() as conn:
        results = await apply_batch(conn, batch, now)
    if engine.dialect.supports_sane_multi_rowcount:
        assert results == {"applied": 2, "stale": 2, "duplicate": 1}
    else:
        assert results == {"applied": 1, "status_batched": 3, "duplicate": 1}
    async with engine.connect() as conn:
        row = (await conn.execute(select(messages).where(messages.c.id == mid))).mappings().one()
    assert row["status"] == S.MESSAGE_STATUS_DELIVERED and row["carrier_result"] == "DELIVRD"
    assert row["error_code"] == "" and row["provider_message_id"] == ""
    assert row["replies"] == 1
    assert row["sent_at"] is not None and row["delivered_at"] is not None


async def insert_sending(engine, mid: str) -> None:  # type: ignore[no-untyped-def]
    async with engine.begin() as conn:
        await conn.execute(insert(messages).values(
            id=mid, campaign_id="c1", workspace_id="w", address="ann@example.com",
            channel=c.CHANNEL_EMAIL, status=S.MESSAGE_STATUS_SENDING, status_rank=1, fields={},
            created_at=datetime.now(UTC)))


async def row_of(engine, mid: str) -> dict:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return dict((await conn.execute(select(messages).where(messages.c.id == mid))).mappings().one())


async def test_success_clears_the_error_of_an_earlier_deferral(engine) -> None:  # type: ignore[no-untyped-def]
    mid = f"m-defer-{os.urandom(4).hex()}"
    await insert_sending(engine, mid)
    async with engine.begin() as conn:
        await apply_batch(conn, [ev(K.MESSAGE_EVENT_KIND_DEFERRED, mid, error_code="451",
                                    error_description="4.7.1 greylisted, try again later",
                                    failure_category=c.FAILURE_CATEGORY_THROTTLED)], datetime.now(UTC))
    assert (await row_of(engine, mid))["error_code"] == "451"
    async with engine.begin() as conn:
        await apply_batch(conn, [ev(K.MESSAGE_EVENT_KIND_SUBMITTED, mid, provider_message_id="<x@example.com>",
                                    route="relay-1")], datetime.now(UTC))
    row = await row_of(engine, mid)
    assert row["status"] == S.MESSAGE_STATUS_SUBMITTED and row["route"] == "relay-1"
    assert (row["error_code"], row["error_description"], row["failure_category"]) == ("", "", 0)
    assert row["sent_at"] is not None
    # A later failure (a bounce) records its own error again; the route stays.
    async with engine.begin() as conn:
        await apply_batch(conn, [ev(K.MESSAGE_EVENT_KIND_BOUNCED, mid, error_code="550",
                                    error_description="bounced: 5.1.1 no such user",
                                    failure_category=c.FAILURE_CATEGORY_INVALID_ADDRESS)], datetime.now(UTC))
    row = await row_of(engine, mid)
    assert row["status"] == S.MESSAGE_STATUS_FAILED and row["error_code"] == "550"
    assert row["route"] == "relay-1" and row["sent_at"] is not None


async def test_a_receipt_before_its_submission_still_counts_as_sent(engine) -> None:  # type: ignore[no-untyped-def]
    mid = f"m-early-{os.urandom(4).hex()}"
    await insert_sending(engine, mid)
    async with engine.begin() as conn:  # the receipt's event overtakes the submission's
        await apply_batch(conn, [
            ev(K.MESSAGE_EVENT_KIND_FAILED, mid, carrier_result="UNDELIV", error_code="001",
               failure_category=c.FAILURE_CATEGORY_CARRIER_REJECTED, attempt=1),
            ev(K.MESSAGE_EVENT_KIND_SUBMITTED, mid, provider_message_id="39F99DD5", attempt=1),
        ], datetime.now(UTC))
    row = await row_of(engine, mid)
    assert row["status"] == S.MESSAGE_STATUS_FAILED and row["sent_at"] is not None


# --- durable receipt fallback: events.receipt.unmatched ---------------------------------


@pytest.fixture(scope="module")
def stats_proc(workdir: Path, nats_url: str, redis_url: str) -> Iterator[procs.Proc]:
    """The real stats process on the session's NATS and Redis (its own prefix and durable)."""
    tag = uuid.uuid4().hex[:8]
    proc = procs.start_module("stats-ledger-it", "services.stats", workdir / f"stats-ledger-{tag}", {
        "HERALD_NATS_URL": nats_url, "HERALD_REDIS_URL": redis_url,
        "HERALD_GRPC_ADDR": "127.0.0.1:0", "HERALD_METRICS_ADDR": "127.0.0.1:0",
        "HERALD_TOKENS_FILE": "", "HERALD_STATS_PREFIX": f"lit{tag}:",
        "HERALD_STATS_DURABLE": f"stats-ledger-it-{tag}"})
    yield proc
    proc.stop()


@pytest.fixture
async def ledger(engine, js):  # type: ignore[no-untyped-def]
    """The ledger's consumers on the session's NATS, with durables of their own."""
    stop = asyncio.Event()
    task = asyncio.create_task(Ledger(Store(engine), js, durable=f"ledger-it-{uuid.uuid4().hex[:8]}",
                                      batch=100).run(stop))
    yield
    stop.set()
    await asyncio.wait_for(task, 10)


async def until(check, what: str, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    """Poll until check() is truthy (the consumers run in the background); fails after timeout."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await check()
        if got:
            return got
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def insert_submitted(engine, provider_id: str, address: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    mid, ws = str(uuid.uuid4()), f"ws-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(insert(messages).values(
            id=mid, campaign_id=str(uuid.uuid4()), workspace_id=ws, address=address,
            channel=c.CHANNEL_SMS, status=S.MESSAGE_STATUS_SUBMITTED,
            status_rank=states.RANK[S.MESSAGE_STATUS_SUBMITTED], provider_message_id=provider_id,
            route="r1", fields={}, created_at=now, sent_at=now))
    return mid, ws


def unmatched(source: str, *ids: str, stat: str = "DELIVRD") -> e.UnmatchedReceipt:
    return e.UnmatchedReceipt(event_id=str(uuid.uuid4()), provider_ids=list(ids), source_address=source,
                              route="r1", stat=stat, error_code="000", occurred_at=to_ts(datetime.now(UTC)))


def unmatched_count(reason: str) -> float:
    return REGISTRY.get_sample_value("herald_campaigns_receipts_unmatched_total", {"reason": reason}) or 0.0


async def test_an_unmatched_receipt_is_credited_from_the_ledger(engine, js, ledger, stats_proc) -> None:  # type: ignore[no-untyped-def]
    # The SMSC answered submit_sm with the hex id; its receipt gives it in decimal with a
    # leading zero (the gateway lists every reading) and the handset without '+'.
    mid, ws = await insert_submitted(engine, "39F99DD5", "+447700900123")
    await bus.publish(js, "events.receipt.unmatched",
                      unmatched("447700900123", "0972660181", "972660181", "39f99dd5"), str(uuid.uuid4()))
    row = await until(lambda: _row_if(engine, mid, S.MESSAGE_STATUS_DELIVERED), "the ledger to credit it")
    assert row["carrier_result"] == "DELIVRD" and row["delivered_at"] is not None
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stats_proc.info['grpc_port']}") as ch:
        stats = sgrpc.StatsServiceStub(ch)

        async def in_stats() -> bool:
            got = await stats.BatchGetMessageStates(spb.BatchGetMessageStatesRequest(message_ids=[mid]),
                                                    metadata=(("x-herald-workspace", ws),))
            return [s.status for s in got.states] == [S.MESSAGE_STATUS_DELIVERED]

        await until(in_stats, "stats to see it delivered")


async def test_a_failed_receipt_from_another_handset_is_not_credited(engine, js, ledger) -> None:  # type: ignore[no-untyped-def]
    mid, _ws = await insert_submitted(engine, "5000123", "+447700900124")
    before = unmatched_count("address_mismatch")
    # The same id, reissued by the SMSC for another number: not this message's receipt.
    await bus.publish(js, "events.receipt.unmatched", unmatched("+447700900999", "5000123", stat="UNDELIV"),
                      str(uuid.uuid4()))

    async def counted() -> bool:
        return unmatched_count("address_mismatch") > before

    await until(counted, "the mismatch to be counted")
    assert (await row_of(engine, mid))["status"] == S.MESSAGE_STATUS_SUBMITTED


def test_handset_forms_and_stat_mapping() -> None:
    assert same_number("447700900123", "+447700900123")
    assert same_number("00447700900123", "+447700900123")
    assert same_number("07700900123", "+447700900123")  # national form: 10 shared digits
    assert not same_number("+447700900124", "+447700900123")
    assert not same_number("900123", "+447700900123")  # too short to prove anything
    assert not same_number("", "+447700900123") and not same_number("HERALD", "+447700900123")
    assert FINAL_STATS["EXPIRED"] == (K.MESSAGE_EVENT_KIND_FAILED, c.FAILURE_CATEGORY_EXPIRED)
    assert "ENROUTE" not in FINAL_STATS


async def _row_if(engine, mid: str, status: int) -> dict | None:  # type: ignore[no-untyped-def]
    row = await row_of(engine, mid)
    return row if row["status"] == status else None


async def test_a_failed_batch_is_logged_with_its_cause_and_redelivered(tmp_path, js, caplog) -> None:  # type: ignore[no-untyped-def]
    """The database refuses the batch (here: its tables do not exist yet): the line says why,
    under a stable name, and the events come back once the database can take them."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'late.db'}"
    engine = db.make_engine(url)
    mid = str(uuid.uuid4())
    stop = asyncio.Event()
    task = asyncio.create_task(Ledger(Store(engine), js, durable=f"ledger-fail-{uuid.uuid4().hex[:8]}",
                                      batch=100).run(stop))
    try:
        await bus.publish(js, "events.message.delivered", ev(K.MESSAGE_EVENT_KIND_DELIVERED, mid,
                                                              carrier_result="DELIVRD"), str(uuid.uuid4()))

        async def logged() -> bool:
            return any(r.getMessage() == "ledger batch failed"
                       and str(getattr(r, "error", "")).startswith("OperationalError: ")
                       for r in caplog.records)

        await until(logged, "the failed batch's log line")
        await db.migrate(MIGRATIONS, url)
        async with engine.begin() as conn:
            await conn.execute(insert(messages).values(
                id=mid, campaign_id="c1", workspace_id="w", address="+447700900123",
                channel=c.CHANNEL_SMS, status=S.MESSAGE_STATUS_SENDING, status_rank=1, fields={},
                created_at=datetime.now(UTC)))
        await until(lambda: _row_if(engine, mid, S.MESSAGE_STATUS_DELIVERED), "the redelivered event")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await engine.dispose()
