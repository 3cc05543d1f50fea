"""The ledger's auto-pause and receipt lookups read partial indexes (migration 0016): only
final outcomes, only rows with a carrier id, so a build's rows and a message's earlier events
do not write entries there. The queries must state the indexes' predicates for the planner to
use them, on both backends; a receipt whose id normalises to nothing matches no message."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

from herald.v1 import common_pb2 as c
from sqlalchemy import insert, text
from sqlalchemy.dialects import postgresql, sqlite

from services.campaigns.repo import message_updates
from services.campaigns.repo import messages as messages_repo
from services.campaigns.schema import FINAL_OUTCOME, messages
from shared import db, states

MIGRATIONS = os.path.join(os.path.dirname(__file__), "../../services/campaigns/migrations")
S = c.MessageStatus
N = 600


def _row(cid: str, i: int, at: datetime) -> dict:
    status = (S.MESSAGE_STATUS_DELIVERED if i % 3 == 0 else S.MESSAGE_STATUS_SUBMITTED if i % 3 == 1
              else S.MESSAGE_STATUS_QUEUED)
    return dict(id=f"{cid[:8]}-{i:05d}", campaign_id=cid, workspace_id="w", address=f"+4477009{i % 1000:05d}",
                channel=c.CHANNEL_SMS, status=status, status_rank=states.RANK[status], fields={},
                provider_message_id="" if status == S.MESSAGE_STATUS_QUEUED else f"00{i + 1:08X}",
                created_at=at, dispatched_at=None if status == S.MESSAGE_STATUS_QUEUED else at,
                updated_at=at + timedelta(seconds=i))


async def _plan(conn, stmt) -> str:  # type: ignore[no-untyped-def]
    """The plan's text: the index names it reads (sequential scans disallowed on PostgreSQL,
    so only an index the query cannot use is left out)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SET LOCAL enable_seqscan = off"))
        sql = str(stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
        return str((await conn.execute(text("EXPLAIN " + sql))).all())
    sql = str(stmt.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
    return str((await conn.execute(text("EXPLAIN QUERY PLAN " + sql))).all())


async def test_partial_indexes_serve_their_queries(fresh_db_url: str) -> None:
    await db.migrate(MIGRATIONS, fresh_db_url)
    engine = db.make_engine(fresh_db_url)
    cid, other = str(uuid.uuid4()), str(uuid.uuid4())
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(messages), [_row(x, i, t0) for x in (cid, other) for i in range(N)])
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text("ANALYZE messages"))
            outcomes = messages_repo.last_outcomes_query(cid, 5, None, ["ABANDONED"])
            assert "ix_messages_campaign_outcomes" in await _plan(conn, outcomes)
        async with engine.begin() as conn:
            lookup = message_updates.by_provider_keys_query(["3"])
            assert "ix_messages_provider_key_set" in await _plan(conn, lookup)
        async with engine.connect() as conn:
            # the n latest final outcomes, newest first, as before
            got = await messages_repo.last_outcomes(conn, cid, 4, None, [])
            assert got == [S.MESSAGE_STATUS_DELIVERED] * 4
            # receipt ids in another case and with the leading zeros dropped still match
            found = await message_updates.by_provider_keys(conn, [f"{5:08X}".lstrip("0").lower()])
            assert sorted(r["id"] for r in found) == sorted([f"{cid[:8]}-00004", f"{other[:8]}-00004"])
            # an id that normalises to "" (e.g. "000") must not match the rows without an id
            assert await message_updates.by_provider_keys(conn, [""]) == []
    finally:
        await engine.dispose()


def test_the_outcomes_predicate_is_the_final_ranks() -> None:
    """FINAL_OUTCOME (the index's predicate, a literal for the planner) is status_rank >= the
    rank of ASSUMED_DELIVERED, the lowest final outcome the auto-pause check reads."""
    assert str(FINAL_OUTCOME) == f"status_rank >= {states.RANK[S.MESSAGE_STATUS_ASSUMED_DELIVERED]}"
    finals = {S.MESSAGE_STATUS_DELIVERED, S.MESSAGE_STATUS_FAILED, S.MESSAGE_STATUS_ASSUMED_DELIVERED,
              S.MESSAGE_STATUS_OPTED_OUT}
    assert all(states.RANK[s] >= 4 for s in finals)
    assert all(states.RANK[s] < 4 for s in (S.MESSAGE_STATUS_QUEUED, S.MESSAGE_STATUS_SENDING,
                                             S.MESSAGE_STATUS_SUBMITTED))
