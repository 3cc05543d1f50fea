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
