"""The recipients store's suppression list and sender registry (one row per workspace,
channel and address key)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.recipients.schema import senders, suppressions
from services.recipients.store_sql import chunks, insert_ignore, new_id
from shared.timeutil import Clock


class ListsStore:
    engine: AsyncEngine
    clock: Clock

    # --- suppressions -------------------------------------------------------------
    async def add_suppression(self, conn: AsyncConnection, ws: str, channel: int, address: str,
                              reason: str, source: str,
                              kind: str = "manual") -> tuple[dict[str, Any], bool]:
        """Idempotent: an address already on the list keeps its first reason, kind and time.
        Returns (row, added)."""
        added = (await conn.execute(insert_ignore(conn, suppressions, [
            "workspace_id", "channel", "address"]).values(
            workspace_id=ws, channel=channel, address=address, reason=reason, source=source,
            kind=kind, created_at=self.clock.now(), id=new_id()).returning(suppressions.c.address))
                 ).first() is not None
        rec = (await conn.execute(select(suppressions).where(
            suppressions.c.workspace_id == ws, suppressions.c.channel == channel,
            suppressions.c.address == address))).mappings().one()
        return dict(rec), added

    @staticmethod
    async def find_suppression(conn: AsyncConnection, ws: str, suppression_id: str | None = None,
                               channel: int | None = None,
                               address: str | None = None) -> dict[str, Any] | None:
        """The workspace's entry with that id, or on that channel for that address key."""
        q = select(suppressions).where(suppressions.c.workspace_id == ws)
        if suppression_id is not None:
            q = q.where(suppressions.c.id == suppression_id)
        else:
            q = q.where(suppressions.c.channel == channel, suppressions.c.address == address)
        rec = (await conn.execute(q)).mappings().first()
        return dict(rec) if rec is not None else None

    @staticmethod
    async def delete_suppression(conn: AsyncConnection, ws: str, channel: int,
                                 address: str) -> None:
        await conn.execute(suppressions.delete().where(
            suppressions.c.workspace_id == ws, suppressions.c.channel == channel,
            suppressions.c.address == address))

    async def suppressed(self, ws: str, channel: int,
                         keys: Iterable[str]) -> dict[str, tuple[str, str]]:
        """{address key: (kind, reason)} of the keys on the workspace's suppression list."""
        wanted = sorted(set(keys))
        found: dict[str, tuple[str, str]] = {}
        if not wanted:
            return found
        async with self.engine.connect() as conn:
            for part in chunks(wanted):
                res = await conn.execute(select(
                    suppressions.c.address, suppressions.c.kind, suppressions.c.reason).where(
                    suppressions.c.workspace_id == ws, suppressions.c.channel == channel,
                    suppressions.c.address.in_(part)))
                found.update((r.address, (r.kind, r.reason)) for r in res)
        return found

    async def list_suppressions(self, ws: str, size: int, offset: int,
                                channel: int | None) -> tuple[list[dict[str, Any]], bool]:
        q = select(suppressions).where(suppressions.c.workspace_id == ws)
        if channel is not None:
            q = q.where(suppressions.c.channel == channel)
        async with self.engine.connect() as conn:
            recs = [dict(r) for r in (await conn.execute(q.order_by(
                suppressions.c.channel, suppressions.c.address).offset(offset).limit(size + 1)
            )).mappings()]
        return recs[:size], len(recs) > size

    # --- senders ------------------------------------------------------------------
    async def sender_owner(self, channel: int, address: str) -> str | None:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(senders.c.workspace_id).where(
                senders.c.channel == channel, senders.c.address == address))).scalar()

    async def claim_sender(self, conn: AsyncConnection, ws: str, channel: int,
                           address: str) -> dict[str, Any]:
        """Registers the sender to ws unless some workspace holds it; returns the row as it
        stands (its workspace_id says who holds it)."""
        await conn.execute(insert_ignore(conn, senders, ["channel", "address"]).values(
            channel=channel, address=address, workspace_id=ws, created_at=self.clock.now()))
        return dict((await conn.execute(select(senders).where(
            senders.c.channel == channel, senders.c.address == address))).mappings().one())

    async def delete_sender(self, conn: AsyncConnection, ws: str, channel: int,
                            address: str) -> dict[str, Any] | None:
        rec = (await conn.execute(select(senders).where(
            senders.c.workspace_id == ws, senders.c.channel == channel,
            senders.c.address == address))).mappings().first()
        if rec is not None:
            await conn.execute(senders.delete().where(
                senders.c.channel == channel, senders.c.address == address))
        return dict(rec) if rec is not None else None

    async def list_senders(self, ws: str, size: int, offset: int,
                           channel: int | None) -> tuple[list[dict[str, Any]], bool]:
        q = select(senders).where(senders.c.workspace_id == ws)
        if channel is not None:
            q = q.where(senders.c.channel == channel)
        async with self.engine.connect() as conn:
            recs = [dict(r) for r in (await conn.execute(q.order_by(
                senders.c.channel, senders.c.address).offset(offset).limit(size + 1)
            )).mappings()]
        return recs[:size], len(recs) > size
