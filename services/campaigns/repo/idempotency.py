"""First answers of mutating RPCs, by (workspace, method, request_id)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.campaigns.schema import idempotency


async def find(conn: AsyncConnection, workspace: str, method: str, request_id: str) -> Any:
    """(response bytes, fingerprint) of the first answer, or None."""
    return (await conn.execute(select(idempotency.c.response, idempotency.c.fingerprint).where(
        idempotency.c.workspace_id == workspace, idempotency.c.method == method,
        idempotency.c.request_id == request_id))).first()


async def remember(conn: AsyncConnection, workspace: str, method: str, request_id: str,
                   response: Any, now: datetime, fingerprint: str = "") -> None:
    await conn.execute(insert(idempotency).values(
        workspace_id=workspace, method=method, request_id=request_id,
        response=response.SerializeToString(), created_at=now, fingerprint=fingerprint or None))
