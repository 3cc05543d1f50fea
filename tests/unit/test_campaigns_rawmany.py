"""RawMany (the ledger's and the build's executemany on SQLite) stores exactly what
SQLAlchemy's own executemany stores: the same rows inserted and the same status updates
applied, run side by side on two SQLite databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from sqlalchemy import select
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import create_async_engine

from services.campaigns.ledger import status_params
from services.campaigns.repo.message_updates import STATUS_UPDATE
from services.campaigns.repo.rawmany import RawMany
from services.campaigns.schema import messages, metadata
from shared import states
from shared.timeutil import to_ts

S = c.MessageStatus
T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def rows(n: int) -> list[dict[str, Any]]:
    return [dict(id=f"m{i:03d}", campaign_id="cp", workspace_id="w", contact_id=f"c{i}",
                 contact_name=f"N {i}", address=f"+4477009{i:05d}", channel=c.CHANNEL_SMS,
                 status=S.MESSAGE_STATUS_QUEUED, status_rank=states.RANK[S.MESSAGE_STATUS_QUEUED],
                 failure_category=0, error_description="", content_preview=f"Hi {i}",
                 fields={"first_name": f"N{i}", "n": str(i)}, variant="", held=False,
                 created_at=T0 + timedelta(microseconds=i), updated_at=T0)
            for i in range(n)]


def updates(n: int) -> list[dict[str, Any]]:
    kinds = [(e.MESSAGE_EVENT_KIND_SUBMITTED, S.MESSAGE_STATUS_SUBMITTED),
             (e.MESSAGE_EVENT_KIND_DELIVERED, S.MESSAGE_STATUS_DELIVERED),
             (e.MESSAGE_EVENT_KIND_FAILED, S.MESSAGE_STATUS_FAILED)]
    out = []
    for i in range(n):
        kind, status = kinds[i % 3]
        ev = e.MessageEvent(message_id=f"m{i:03d}", kind=kind, status=status, attempt=i % 2,
                            occurred_at=to_ts(T0 + timedelta(seconds=i, microseconds=7)),
                            provider_message_id=f"p{i}" if i % 4 else "", route="r1" if i % 5 else "",
                            error_code="E1" if status == S.MESSAGE_STATUS_FAILED else "",
                            carrier_result="DELIVRD" if status == S.MESSAGE_STATUS_DELIVERED else "")
        out.append(status_params(ev, status, T0))
    return out


async def test_rawmany_writes_what_sqlalchemy_writes(tmp_path: Path) -> None:
    dumps = []
    for how in ("sqlalchemy", "rawmany"):
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/{how}.db")
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            ins = sqlite.insert(messages).on_conflict_do_nothing()
            upd = updates(40)
            if how == "rawmany":
                assert RawMany.usable(conn)
                assert await RawMany(ins).run(conn, rows(30)) == 30
                moved = await RawMany(STATUS_UPDATE).run(conn, upd)
            else:
                await conn.execute(ins, rows(30))
                moved = (await conn.execute(STATUS_UPDATE, upd)).rowcount
            dumps.append((moved, [tuple(r) for r in await conn.execute(select(messages).order_by(messages.c.id))]))
        await engine.dispose()
    assert dumps[0] == dumps[1]
    assert dumps[0][0] == 30  # updates of ids the ledger does not have change nothing



async def test_shared_and_shifted_timestamps_are_written_as_sqlalchemy_writes(tmp_path: Path) -> None:
    """Rows sharing one datetime object (a build's rows share its clock reading) and equal
    instants in another time zone (SQLite's DATETIME processor writes their wall clock, so
    they must not reuse the shared object's text)."""
    from datetime import timezone

    shifted = T0.astimezone(timezone(timedelta(hours=1)))  # == T0, another wall clock
    stamps = (T0, T0, shifted, T0, shifted, shifted)
    dumps = []
    for how in ("sqlalchemy", "rawmany"):
        batch = rows(len(stamps))
        for r, at in zip(batch, stamps, strict=True):
            r["created_at"] = r["updated_at"] = at
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path}/{how}.db")
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            ins = sqlite.insert(messages)
            if how == "rawmany":
                await RawMany(ins).run(conn, batch)
            else:
                await conn.execute(ins, batch)
            dumps.append([tuple(r) for r in await conn.exec_driver_sql(
                "SELECT id, created_at, updated_at FROM messages ORDER BY id")])
        await engine.dispose()
    assert dumps[0] == dumps[1]
    assert len({r[1] for r in dumps[0]}) == 2  # two wall clocks written
