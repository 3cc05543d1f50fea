"""The dispatcher's next page of waiting messages and SPREAD's pacing counts read the partial
index of undispatched messages (migration 0017). On PostgreSQL the full index they read
before kept every dispatched row ahead of the waiting ones, so each page stepped over all of
them: the cost grew with the part of the campaign already sent."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

from herald.v1 import common_pb2 as c
from sqlalchemy import func, insert, select, text
from sqlalchemy.dialects import postgresql

from services.campaigns.repo import messages as messages_repo
from services.campaigns.schema import messages
from shared import db, states

MIGRATIONS = os.path.join(os.path.dirname(__file__), "../../services/campaigns/migrations")
S = c.MessageStatus
N = 4000


def _row(cid: str, i: int, t0: datetime) -> dict:
    bad = i % 97 == 5  # refused at build (e.g. an invalid address): final, never dispatched
    status = S.MESSAGE_STATUS_FAILED if bad else S.MESSAGE_STATUS_QUEUED
    return dict(id=f"{cid[:8]}-{i:05d}", campaign_id=cid, workspace_id="w", address=f"+4477009{i % 1000:05d}",
                channel=c.CHANNEL_SMS, status=status, status_rank=states.RANK[status], fields={},
                held=i % 10 == 3, created_at=t0 + timedelta(milliseconds=i), updated_at=t0)


async def test_next_page_and_pacing_counts_skip_what_was_dispatched(fresh_db_url: str) -> None:
    await db.migrate(MIGRATIONS, fresh_db_url)
    engine = db.make_engine(fresh_db_url)
    cid, other = str(uuid.uuid4()), str(uuid.uuid4())
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    rows = {x: [_row(x, i, t0) for i in range(N)] for x in (cid, other)}
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(messages), rows[cid] + rows[other])
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text("ANALYZE messages"))  # as after a build: nothing dispatched
        sent: list[str] = []
        for _ in range(N // 2 // 200):  # the dispatcher's loop: read a page, mark it dispatched
            async with engine.begin() as conn:
                page = await messages_repo.next_to_send(conn, cid, 200)
                await messages_repo.mark_dispatched(conn, [r["id"] for r in page], t0)
            sent += [r["id"] for r in page]
        waiting = [r["id"] for r in rows[cid] if r["status"] == S.MESSAGE_STATUS_QUEUED and not r["held"]]
        assert sent == waiting[:len(sent)]  # audience order, held and refused rows left out
        async with engine.connect() as conn:
            page = await messages_repo.next_to_send(conn, cid, 100)
            assert [r["id"] for r in page] == waiting[len(sent):len(sent) + 100]
            total, dispatched = await messages_repo.dispatch_counts(conn, cid)
            old = (await conn.execute(select(func.count(), func.count(messages.c.dispatched_at)).where(
                messages.c.campaign_id == cid))).one()
            assert (total, dispatched) == tuple(old) == (N, len(sent))
            if conn.dialect.name == "postgresql":
                sql = str(messages_repo.next_to_send_query(cid, 100).compile(
                    dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
                plan = (await conn.execute(text("EXPLAIN (ANALYZE, FORMAT JSON) " + sql))).scalar_one()[0]["Plan"]
                scan = plan["Plans"][0]
                assert scan.get("Index Name") == "ix_messages_waiting", plan
                # what it steps over is only the held and refused rows before the page's end,
                # not the dispatched ones (2,000 here)
                last = int(page[-1]["id"].rsplit("-", 1)[1])
                skipped = sum(1 for r in rows[cid][:last + 1] if r["held"] or r["status"] != S.MESSAGE_STATUS_QUEUED)
                assert scan.get("Rows Removed by Filter", 0) <= skipped < len(sent), plan
    finally:
        await engine.dispose()
