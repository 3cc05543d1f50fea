"""Two writers of the same ledger rows on PostgreSQL never deadlock: the ledger applies a
batch of message events after locking its rows in id order, and the dispatcher marks the
jobs it published as dispatched; with campaigns replicas (or one replica's ledger consumer
and its dispatcher) both run at once on overlapping rows. The dispatcher's update took its
row locks in the table's physical order, the ledger in id order: each held what the other
waited for, and PostgreSQL killed one after a second (ERROR "deadlock detected", the ledger
batch retried, the tick failed)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from sqlalchemy import select as sa_select
from sqlalchemy import update
from sqlalchemy.ext.asyncio import create_async_engine

from services.campaigns import ledger
from services.campaigns.repo import message_updates
from services.campaigns.repo import messages as messages_repo
from services.campaigns.schema import messages, metadata
from shared import states
from shared.timeutil import to_ts

S = c.MessageStatus
ROWS = 400
ROUNDS = 12


@pytest.mark.pg
async def test_ledger_batches_and_dispatch_marks_on_the_same_rows_never_deadlock(empty_pg_url: str) -> None:
    engine = create_async_engine(empty_pg_url, pool_size=4)
    now = datetime.now(UTC)
    # Inserted in descending id order: the physical order is the reverse of the id order,
    # as when an audience arrives in contact order and message ids are hashes.
    ids = [f"m{i:05d}" for i in range(ROWS)]
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(messages.insert(), [dict(
            id=mid, campaign_id="cp", workspace_id="w", contact_id=mid, contact_name="",
            address="+447700900000", channel=c.CHANNEL_SMS, status=S.MESSAGE_STATUS_QUEUED,
            status_rank=states.RANK[S.MESSAGE_STATUS_QUEUED], failure_category=0,
            error_description="", content_preview="", fields={}, variant="", held=False,
            created_at=now, updated_at=now) for mid in reversed(ids)])

    async def ledger_batch() -> None:
        async with engine.begin() as conn:
            found = await message_updates.current_states(conn, ids)
            assert len(found) == ROWS
            await conn.execute(update(messages).where(messages.c.id.in_(ids))
                               .values(updated_at=datetime.now(UTC)))

    async def dispatch_marks() -> None:
        async with engine.begin() as conn:
            await messages_repo.mark_dispatched(conn, ids, datetime.now(UTC))

    try:
        for _ in range(ROUNDS):
            done = await asyncio.gather(ledger_batch(), dispatch_marks(), ledger_batch(),
                                        dispatch_marks(), return_exceptions=True)
            errors = [repr(r) for r in done if isinstance(r, BaseException)]
            assert not errors, errors  # e.g. DeadlockDetectedError('deadlock detected')
    finally:
        await engine.dispose()


@pytest.mark.pg
async def test_a_ledger_batch_split_by_a_counter_event_does_not_deadlock_with_dispatch(
        empty_pg_url: str) -> None:
    """A batch [status of H, an open of X, status of L] was applied as three statements, each
    locking its own rows: H, then X, then L. A dispatcher holding L (it locks in id order)
    and then asking for H deadlocked with it. The ledger now locks the whole batch in id
    order first, so it waits for L holding nothing and the dispatcher goes on."""
    engine = create_async_engine(empty_pg_url, pool_size=4)
    now = datetime.now(UTC)
    low, mid, high = "m00001", "m00002", "m00003"
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(messages.insert(), [dict(
            id=m, campaign_id="cp", workspace_id="w", contact_id=m, contact_name="",
            address="+447700900000", channel=c.CHANNEL_SMS, status=S.MESSAGE_STATUS_SENDING,
            status_rank=states.RANK[S.MESSAGE_STATUS_SENDING], failure_category=0, attempt=1,
            error_description="", content_preview="", fields={}, variant="", held=False,
            created_at=now, updated_at=now, dispatched_at=now) for m in (high, mid, low)])

    def submitted(mid_: str) -> e.MessageEvent:
        return e.MessageEvent(event_id=f"sub-{mid_}", kind=e.MESSAGE_EVENT_KIND_SUBMITTED,
                              message_id=mid_, campaign_id="cp", attempt=1, occurred_at=to_ts(now))

    batch = [submitted(high),
             e.MessageEvent(event_id="open-1", kind=e.MESSAGE_EVENT_KIND_OPENED, message_id=mid,
                            campaign_id="cp", occurred_at=to_ts(now)),
             submitted(low)]
    holding_low = asyncio.Event()
    try:
        async def dispatcher() -> None:
            async with engine.begin() as conn:
                await message_updates.current_states(conn, [low])
                holding_low.set()
                await asyncio.sleep(0.5)  # the ledger's batch is under way meanwhile
                await message_updates.current_states(conn, [high])

        async def ledger_batch() -> None:
            await holding_low.wait()
            async with engine.begin() as conn:
                await ledger.apply_batch(conn, batch, now)

        done = await asyncio.wait_for(asyncio.gather(dispatcher(), ledger_batch(),
                                                     return_exceptions=True), 30)
        errors = [repr(r) for r in done if isinstance(r, BaseException)]
        assert not errors, errors  # before: DeadlockDetectedError('deadlock detected')
        async with engine.connect() as conn:
            got = dict((await conn.execute(sa_select(messages.c.id, messages.c.status))).all())
        assert got == {high: S.MESSAGE_STATUS_SUBMITTED, mid: S.MESSAGE_STATUS_SENDING,
                       low: S.MESSAGE_STATUS_SUBMITTED}
    finally:
        await engine.dispose()
