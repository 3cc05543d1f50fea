"""A build's chunk goes into the ledger once: add_missing inserts the rows the ledger does not
have and says which were new. On PostgreSQL it learns that from the INSERT itself: a check of
which ids existed first (id IN (<1,000 ids>)) was planned as a pass over the whole ledger
whenever the statistics were a smaller table's, once per chunk (1 s a chunk at 60,000
messages, growing with the campaign)."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

from herald.v1 import common_pb2 as c
from sqlalchemy import event, func, select

from services.campaigns.repo import messages as messages_repo
from services.campaigns.schema import messages
from shared import db, states

MIGRATIONS = os.path.join(os.path.dirname(__file__), "../../services/campaigns/migrations")
S = c.MessageStatus


def _rows(cid: str, ids: range, t0: datetime) -> list[dict]:
    return [dict(id=f"{cid[:8]}-{i:05d}", campaign_id=cid, workspace_id="w", contact_id=str(i), contact_name="",
                 address=f"+4477009{i % 1000:05d}", channel=c.CHANNEL_SMS, status=S.MESSAGE_STATUS_QUEUED,
                 status_rank=states.RANK[S.MESSAGE_STATUS_QUEUED], variant="", content_preview="Hi",
                 fields={"first_name": "Ann"}, created_at=t0 + timedelta(milliseconds=i), updated_at=t0,
                 held=False, attempt=1) for i in ids]


async def test_a_chunk_is_added_once_and_the_new_rows_are_told(fresh_db_url: str) -> None:
    await db.migrate(MIGRATIONS, fresh_db_url)
    engine = db.make_engine(fresh_db_url)
    statements: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute",
                 lambda _c, _cur, sql, *_a: statements.append(" ".join(sql.split())))
    cid = str(uuid.uuid4())
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    try:
        async with engine.begin() as conn:
            new, kept = await messages_repo.add_missing(conn, _rows(cid, range(0, 1000), t0))
        assert (len(new), kept) == (1000, 0)
        async with engine.begin() as conn:  # a resumed build sends an overlapping chunk
            again = _rows(cid, range(500, 1500), t0)
            again[0]["content_preview"] = "changed"  # a row already there is left as it was
            new, kept = await messages_repo.add_missing(conn, again)
        assert [r["id"] for r in new] == [f"{cid[:8]}-{i:05d}" for i in range(1000, 1500)] and kept == 500
        async with engine.connect() as conn:
            assert (await conn.execute(select(func.count()).where(messages.c.campaign_id == cid))).scalar_one() == 1500
            assert (await conn.execute(select(messages.c.content_preview).where(
                messages.c.id == f"{cid[:8]}-00500"))).scalar_one() == "Hi"
        if engine.dialect.name == "postgresql":
            looked_up = [s for s in statements if s.startswith("SELECT messages.id FROM messages WHERE messages.id IN")]
            assert looked_up == [], looked_up[:1]
    finally:
        await engine.dispose()
