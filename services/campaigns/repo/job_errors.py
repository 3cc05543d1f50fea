"""Job errors: the Errors tab's Job sub-tab (build, dispatch and export failures)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.campaigns.schema import job_errors


async def add(conn: AsyncConnection, row: Any, stage: str, message: str, now: datetime) -> None:
    await conn.execute(insert(job_errors).values(
        campaign_id=row["id"], workspace_id=row["workspace_id"], stage=stage, message=message, at=now))


async def last_message(conn: AsyncConnection, campaign_id: str) -> str | None:
    last = (await conn.execute(select(job_errors.c.message).where(
        job_errors.c.campaign_id == campaign_id).order_by(job_errors.c.id.desc()).limit(1))).first()
    return None if last is None else last[0]


async def page(conn: AsyncConnection, campaign_id: str, size: int, offset: int) -> tuple[int, list[Any]]:
    """(total, newest first page)."""
    cond = job_errors.c.campaign_id == campaign_id
    total = (await conn.execute(select(func.count()).select_from(job_errors).where(cond))).scalar_one()
    rows = (await conn.execute(select(job_errors).where(cond).order_by(job_errors.c.id.desc())
                               .limit(size).offset(offset))).mappings().all()
    return total, list(rows)
