"""Export rows: QUEUED -> RUNNING -> DONE (or FAILED), the file kept until it expires."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from herald.v1 import campaigns_pb2 as pb
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.campaigns.schema import exports


def _without_content() -> list[Any]:
    """Every column but the file, and the file's length."""
    return [col for col in exports.c if col.name != "content"] + [
        func.length(exports.c.content).label("content_len")]


async def add(conn: AsyncConnection, values: dict[str, Any]) -> Any:
    await conn.execute(insert(exports).values(**values))
    return (await conn.execute(select(exports).where(exports.c.id == values["id"]))).mappings().one()


async def get(conn: AsyncConnection, export_id: str, workspace: str | None,
              with_content: bool = False) -> Any:
    q = select(*([exports] if with_content else _without_content())).where(exports.c.id == export_id)
    if workspace is not None:
        q = q.where(exports.c.workspace_id == workspace)
    return (await conn.execute(q)).mappings().first()


async def page(conn: AsyncConnection, campaign_id: str, size: int, offset: int) -> list[Any]:
    """Newest first; size + 1 rows tell whether another page follows."""
    return list((await conn.execute(select(*_without_content()).where(exports.c.campaign_id == campaign_id)
                                    .order_by(exports.c.created_at.desc(), exports.c.id)
                                    .limit(size + 1).offset(offset))).mappings().all())


async def expire_and_list_queued(conn: AsyncConnection, now: datetime) -> list[str]:
    """Drop the files of expired exports; the ids of the QUEUED ones, oldest first."""
    await conn.execute(update(exports).where(
        exports.c.status == pb.EXPORT_STATUS_DONE, exports.c.expires_at <= now,
    ).values(status=pb.EXPORT_STATUS_EXPIRED, content=None))
    return [r[0] for r in (await conn.execute(select(exports.c.id).where(
        exports.c.status == pb.EXPORT_STATUS_QUEUED).order_by(exports.c.created_at))).all()]


async def claim(conn: AsyncConnection, export_id: str) -> Any:
    """QUEUED -> RUNNING (compare-and-set, so one replica builds each): the row, or None."""
    res = await conn.execute(update(exports).where(
        exports.c.id == export_id, exports.c.status == pb.EXPORT_STATUS_QUEUED,
    ).values(status=pb.EXPORT_STATUS_RUNNING))
    if res.rowcount != 1:
        return None
    return (await conn.execute(select(exports).where(exports.c.id == export_id))).mappings().one()


async def finish(conn: AsyncConnection, export_id: str, **values: Any) -> None:
    await conn.execute(update(exports).where(exports.c.id == export_id).values(**values))
