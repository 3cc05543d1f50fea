"""message_counts (what GetCampaign, ListCampaigns and the tab counts read) stays equal to
the ledger it counts, through every writer of the ledger: the build's inserts, dispatch,
the ledger consumer's forward-only updates (several events of one message in a batch,
stale and older-attempt events, counters), retries, the cancel/expiry sweep, held A/B rows
and the winner's promotion, a campaign's deletion; on SQLite and on PostgreSQL. The check
is the ledger scan the counters replaced (repo.messages.overview_scan / progress_scan).
Also: migration 0011 counts a ledger that existed before it, and ReconcileCampaign's check
rebuilds counts that drifted."""

from __future__ import annotations

import asyncio
import os
import random
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from sqlalchemy import insert, text, update

from services.campaigns import metrics
from services.campaigns.ledger import apply_batch
from services.campaigns.repo import campaigns as campaigns_repo
from services.campaigns.repo import message_updates
from services.campaigns.repo import messages as messages_repo
from services.campaigns.schema import message_counts, messages
from shared import db, states
from shared.timeutil import to_ts

MIGRATIONS = os.path.join(os.path.dirname(__file__), "../../services/campaigns/migrations")
S = c.MessageStatus
K = e.MessageEventKind
N = 240
KINDS = [
    K.MESSAGE_EVENT_KIND_SUBMITTED,
    K.MESSAGE_EVENT_KIND_DELIVERED,
    K.MESSAGE_EVENT_KIND_FAILED,
    K.MESSAGE_EVENT_KIND_DEFERRED,
    K.MESSAGE_EVENT_KIND_ASSUMED_DELIVERED,
    K.MESSAGE_EVENT_KIND_OPENED,
    K.MESSAGE_EVENT_KIND_OPTED_OUT,
    K.MESSAGE_EVENT_KIND_BOUNCED,
    K.MESSAGE_EVENT_KIND_SENDING,
]

STATUS_KINDS = [k for k in KINDS if k != K.MESSAGE_EVENT_KIND_OPENED]


def row(cid: str, i: int, at: datetime, held: bool = False) -> dict:
    return dict(
        id=f"{cid}-{i:04d}",
        campaign_id=cid,
        workspace_id="w",
        contact_id=str(i),
        contact_name="",
        address=f"+4477009{i:05d}",
        channel=c.CHANNEL_SMS,
        status=S.MESSAGE_STATUS_QUEUED,
        status_rank=states.RANK[S.MESSAGE_STATUS_QUEUED],
        carrier_result="",
        error_code="",
        error_description="",
        failure_category=0,
        provider_message_id="",
        attempt=1,
        variant="",
        content_preview="",
        fields={},
        views=0,
        clicks=0,
        replies=0,
        created_at=at,
        dispatched_at=None,
        sent_at=None,
        delivered_at=None,
        updated_at=at,
        held=held,
        route="",
    )


async def same(engine, *cids: str) -> None:  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        for cid in cids:
            assert await messages_repo.overview(conn, cid) == await messages_repo.overview_scan(
                conn, cid
            ), cid
        assert await messages_repo.progress(conn, list(cids)) == await messages_repo.progress_scan(
            conn, list(cids)
        )


def event(rnd: random.Random, mid: str, at: datetime, kinds: list[int] = KINDS) -> e.MessageEvent:
    kind = rnd.choice(kinds)
    return e.MessageEvent(
        kind=kind,
        message_id=mid,
        status=states.KIND_STATUS.get(kind, 0),
        event_id=f"{mid}-{rnd.random()}",
        attempt=rnd.choice([0, 0, 1, 2]),
        carrier_result=rnd.choice(["", "DELIVRD"]),
        occurred_at=to_ts(at),
    )


async def drive(engine, cid: str, other: str) -> None:  # type: ignore[no-untyped-def]
    rnd = random.Random(cid)
    day1 = datetime(2026, 11, 30, 23, 59, 30, tzinfo=UTC)
    ids = [f"{cid}-{i:04d}" for i in range(N)]
    async with engine.begin() as conn:  # the build (held A/B rows among them), a second campaign
        new, _ = await messages_repo.add_missing(
            conn, [row(cid, i, day1, held=i % 5 == 0) for i in range(N)]
        )
        assert len(new) == N
        await messages_repo.add_missing(conn, [row(other, i, day1) for i in range(20)])
        await messages_repo.add_missing(
            conn, [row(cid, i, day1) for i in range(10)]
        )  # a rebuild: kept
    await same(engine, cid, other)
    async with engine.begin() as conn:  # dispatch, across a UTC midnight
        await messages_repo.mark_dispatched(conn, ids[:100], day1)
        await messages_repo.mark_dispatched(conn, ids[100:200], day1 + timedelta(minutes=1))
    await same(engine, cid, other)
    for step in range(6):  # ledger batches: several events per message, stale, counters
        at = day1 + timedelta(minutes=2 + step * 30)
        batch = [event(rnd, rnd.choice(ids[:210]), at) for _ in range(150)]
        async with engine.begin() as conn:
            await apply_batch(conn, batch, at, metrics.Tally())
        await same(engine, cid, other)
    async with engine.begin() as conn:  # RetryMessages: failed rows back to QUEUED
        failed = await messages_repo.retry_candidates(conn, cid, [], [], True)
        for r in failed:
            await messages_repo.requeue(conn, r.id, r.attempt + 1, day1 + timedelta(hours=4))
    await same(engine, cid, other)
    async with engine.begin() as conn:  # the winner: held rows released
        await messages_repo.release_held(conn, cid, "A", day1 + timedelta(hours=5))
        await messages_repo.mark_dispatched(conn, ids[200:230], day1 + timedelta(hours=5))
    await same(engine, cid, other)
    async with engine.begin() as conn:  # events of the retried attempt, then cancel/expiry
        at = day1 + timedelta(hours=6)
        await apply_batch(conn, [event(rnd, r.id, at) for r in failed], at, metrics.Tally())
        waiting = await messages_repo.waiting_ids(conn, cid)
        await messages_repo.finish_queued(
            conn, waiting, S.MESSAGE_STATUS_CANCELLED, 0, "cancelled", at
        )
    await same(engine, cid, other)
    async with engine.begin() as conn:  # a campaign deleted: no counts left behind
        await campaigns_repo.remove(conn, other)
    await same(engine, cid, other)
    async with engine.connect() as conn:
        left = (
            await conn.execute(
                text("SELECT count(*) FROM message_counts WHERE campaign_id = :c"), {"c": other}
            )
        ).scalar_one()
        prog = (await messages_repo.progress(conn, [cid]))[cid]
    assert left == 0
    assert prog.total == N and prog.processed > 0 and prog.sent > 0


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path):  # type: ignore[no-untyped-def]
    url = (
        f"sqlite+aiosqlite:///{tmp_path / 'c.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("empty_pg_url")
    )
    await db.migrate(MIGRATIONS, url)
    eng = db.make_engine(url)
    yield eng
    await eng.dispose()


async def test_counts_follow_every_writer_of_the_ledger(engine) -> None:  # type: ignore[no-untyped-def]
    await drive(engine, "cp-one", "cp-other")


async def test_concurrent_writers_of_one_campaign_keep_counts_exact(engine) -> None:  # type: ignore[no-untyped-def]
    """Ledger batches and dispatch marks of one campaign at once (ledger replicas and the
    dispatcher; on PostgreSQL on separate connections, so on separate count slots). The
    ledger passes its outcome tally, as the consumer does: its rows are locked in id order.
    Status events only: a view or click event splits a batch into several updates, each
    locking its own rows, and those can deadlock with a dispatch mark on the ledger's rows
    alone, counts or not."""
    cid, at = "cp-busy", datetime.now(UTC)
    ids = [f"{cid}-{i:04d}" for i in range(N)]
    async with engine.begin() as conn:
        await messages_repo.add_missing(conn, [row(cid, i, at) for i in range(N)])

    async def ledger(seed: int) -> None:
        rnd = random.Random(seed)
        for _ in range(4):
            async with engine.begin() as conn:
                await apply_batch(
                    conn,
                    [event(rnd, rnd.choice(ids), at, STATUS_KINDS) for _ in range(60)],
                    at,
                    metrics.Tally(),
                )

    async def dispatch(part: list[str]) -> None:
        async with engine.begin() as conn:
            await messages_repo.mark_dispatched(conn, part, at)

    await asyncio.gather(ledger(1), dispatch(ids[::2]), ledger(2), dispatch(ids[1::2]))
    await same(engine, cid)


async def test_migration_counts_the_ledger_it_finds(
    tmp_path, request: pytest.FixtureRequest
) -> None:
    for url in (
        f"sqlite+aiosqlite:///{tmp_path / 'm.db'}",
        request.getfixturevalue("empty_pg_url"),
    ):
        await asyncio.to_thread(command.upgrade, db.alembic_config(MIGRATIONS, url), "0010")
        eng = db.make_engine(url)
        at = datetime(2026, 11, 29, 10, tzinfo=UTC)
        async with eng.begin() as conn:
            await conn.execute(
                insert(messages), [row("cp-old", i, at, held=i % 7 == 0) for i in range(50)]
            )
            await conn.execute(
                update(messages)
                .where(messages.c.id < "cp-old-0030")
                .values(dispatched_at=at, status=S.MESSAGE_STATUS_DELIVERED, sent_at=at)
            )
        await db.migrate(MIGRATIONS, url)
        await same(eng, "cp-old")
        await eng.dispose()


async def test_recount_repairs_counts_that_drifted(engine) -> None:  # type: ignore[no-untyped-def]
    at = datetime.now(UTC)
    async with engine.begin() as conn:
        await messages_repo.add_missing(conn, [row("cp-drift", i, at) for i in range(30)])
        await conn.execute(update(message_counts).values(n=message_counts.c.n + 7))
    async with engine.connect() as conn:
        assert await messages_repo.overview(conn, "cp-drift") != await messages_repo.overview_scan(
            conn, "cp-drift"
        )
    async with engine.begin() as conn:
        await message_updates.hold_counts(conn)
        await message_updates.recount(conn, "cp-drift")
    await same(engine, "cp-drift")
