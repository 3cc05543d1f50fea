"""The ledger applies events forwards only and counts each open/click once, on both backends."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from sqlalchemy import insert, select

from services.campaigns.ledger import apply_batch
from services.campaigns.schema import messages
from shared import db, states
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
