"""The shared state-order vectors (tests/vectors/state_order.py) against the real campaigns
ledger: its SQL update on SQLite and PostgreSQL ends every case in the expected status and
attempt. Each case is its own message: brought to its current status by the ledger itself
(an event of that status), then given the incoming event."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import pytest
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from sqlalchemy import insert, select

from services.campaigns.ledger import apply_batch
from services.campaigns.schema import messages
from shared import db
from shared.timeutil import to_ts
from tests.vectors import state_order as vectors

MIGRATIONS = os.path.join(os.path.dirname(__file__), "../../services/campaigns/migrations")


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path):  # type: ignore[no-untyped-def]
    url = (f"sqlite+aiosqlite:///{tmp_path / 'order.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    await db.migrate(MIGRATIONS, url)
    eng = db.make_engine(url)
    yield eng
    await eng.dispose()


def event(kind_name: str, mid: str, attempt: int) -> e.MessageEvent:
    kind = vectors.kind(kind_name)
    status = vectors.status(vectors.STATUS_KINDS[kind_name]) if kind_name in vectors.STATUS_KINDS else 0
    return e.MessageEvent(event_id=f"{mid}:{kind_name}:{uuid.uuid4().hex[:8]}", kind=kind,
                          message_id=mid, status=status, attempt=attempt, channel=c.CHANNEL_SMS,
                          occurred_at=to_ts(datetime.now(UTC)))


async def test_every_state_order_vector_holds_in_the_ledger(engine) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    run = uuid.uuid4().hex[:8]
    cases = list(enumerate(vectors.CASES))  # a case may be listed twice (named and in the matrix)
    ids = {i: f"order-{run}-{i}" for i, _case in cases}
    assert len(vectors.CASES) > 50  # the matrix is there, not just a few named cases
    async with engine.begin() as conn:
        await conn.execute(insert(messages), [dict(
            id=ids[i], campaign_id=f"order-{run}", workspace_id="w", address="+447700900123",
            channel=c.CHANNEL_SMS, status=c.MESSAGE_STATUS_QUEUED, status_rank=0,
            attempt=case.current_attempt, fields={}, created_at=now) for i, case in cases])
    setup = [event(vectors.setup_kind(case.current), ids[i], case.current_attempt)
             for i, case in cases if case.current != "QUEUED"]
    async with engine.begin() as conn:
        await apply_batch(conn, setup, now)
    async with engine.connect() as conn:
        got = {r.id: r.status for r in await conn.execute(select(messages.c.id, messages.c.status).where(
            messages.c.campaign_id == f"order-{run}"))}
    assert {case.id: got[ids[i]] for i, case in cases} == {
        case.id: vectors.status(case.current) for _i, case in cases}
    incoming = [event(case.incoming, ids[i], case.incoming_attempt) for i, case in cases]
    async with engine.begin() as conn:
        await apply_batch(conn, incoming, now)
    async with engine.connect() as conn:
        rows = {r.id: (r.status, r.attempt) for r in await conn.execute(
            select(messages.c.id, messages.c.status, messages.c.attempt).where(
                messages.c.campaign_id == f"order-{run}"))}
    wrong = {case.id: (c.MessageStatus.Name(rows[ids[i]][0]), rows[ids[i]][1]) for i, case in cases
             if rows[ids[i]] != (vectors.status(case.expected), case.expected_attempt)}
    assert not wrong, wrong
