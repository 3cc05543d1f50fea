"""message_counts: a ledger batch as rounds (PostgreSQL's one-statement update) keeps each
message's events in order; a schema made by metadata.create_all keeps the counts too."""

from __future__ import annotations

from datetime import UTC, datetime

from herald.v1 import common_pb2 as c
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import create_async_engine

from services.campaigns.repo import message_updates
from services.campaigns.repo import messages as messages_repo
from services.campaigns.schema import messages, metadata
from shared import states

S = c.MessageStatus


def test_rounds_hold_each_message_once_and_in_order() -> None:
    rows = [{"b_id": m, "n": i} for i, m in enumerate("abacbaa")]
    rounds = message_updates._rounds(rows)  # noqa: SLF001
    assert [[(r["b_id"], r["n"]) for r in rd] for rd in rounds] == [
        [("a", 0), ("b", 1), ("c", 3)],
        [("a", 2), ("b", 4)],
        [("a", 5)],
        [("a", 6)],
    ]
    assert message_updates._rounds([]) == []  # noqa: SLF001


async def test_create_all_schema_counts_the_ledger(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'u.db'}")
    now = datetime(2026, 12, 1, 9, tzinfo=UTC)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            await conn.execute(
                messages.insert(),
                [
                    dict(
                        id=f"m{i}",
                        campaign_id="cp",
                        workspace_id="w",
                        address="+447700900000",
                        channel=c.CHANNEL_SMS,
                        status=S.MESSAGE_STATUS_QUEUED,
                        status_rank=states.RANK[S.MESSAGE_STATUS_QUEUED],
                        fields={},
                        created_at=now,
                        held=i == 0,
                    )
                    for i in range(6)
                ],
            )
            await messages_repo.mark_dispatched(conn, ["m1", "m2", "m3"], now)
            await conn.execute(
                update(messages)
                .where(messages.c.id == "m2")
                .values(status=S.MESSAGE_STATUS_DELIVERED, sent_at=now, updated_at=now)
            )
            await conn.execute(delete(messages).where(messages.c.id == "m5"))
        async with engine.connect() as conn:
            counted = await messages_repo.overview(conn, "cp")
            assert counted == await messages_repo.overview_scan(conn, "cp")
        prog, days, held = counted
        assert (prog.total, prog.sending, prog.delivered, prog.queued, prog.sent) == (5, 2, 1, 2, 1)
        assert [(d.date, d.sent, d.delivered) for d in days] == [("2026-12-01", 1, 1)] and held == 1
    finally:
        await engine.dispose()
