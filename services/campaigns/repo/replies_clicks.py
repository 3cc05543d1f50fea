"""Replies and clicks of a campaign's messages, and the processed-events log that counts each
counter event (open, click, reply) once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from services.campaigns.schema import clicks, messages, processed_events, replies


async def first_time(conn: AsyncConnection, event_id: str, now: Any) -> bool:
    ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(processed_events)
    res = await conn.execute(ins.values(event_id=event_id, at=now).on_conflict_do_nothing())
    return res.rowcount == 1


async def add_reply(conn: AsyncConnection, event_id: str, message_id: str, campaign_id: str,
                    from_address: str, text: str, at: datetime) -> None:
    await conn.execute(insert(replies).values(
        event_id=event_id, message_id=message_id, campaign_id=campaign_id,
        from_address=from_address, text=text, at=at))


async def add_click(conn: AsyncConnection, event_id: str, message_id: str, campaign_id: str,
                    link_index: int, url: str, at: datetime) -> None:
    await conn.execute(insert(clicks).values(
        event_id=event_id, message_id=message_id, campaign_id=campaign_id,
        link_index=link_index, url=url, at=at))


async def replies_page(conn: AsyncConnection, campaign_id: str, size: int,
                       offset: int) -> tuple[int, list[Any]]:
    """(total, newest first page, each with its message's contact)."""
    cond = replies.c.campaign_id == campaign_id
    total = (await conn.execute(select(func.count()).select_from(replies).where(cond))).scalar_one()
    rows = (await conn.execute(
        select(replies, messages.c.contact_id, messages.c.contact_name)
        .join(messages, messages.c.id == replies.c.message_id).where(cond)
        .order_by(replies.c.at.desc(), replies.c.event_id).limit(size).offset(offset))).mappings().all()
    return total, list(rows)


async def clicks_page(conn: AsyncConnection, campaign_id: str, size: int,
                      offset: int) -> tuple[int, int, list[Any]]:
    """(total, unique contacts, oldest first page, each with its message's contact)."""
    cond = clicks.c.campaign_id == campaign_id
    total, unique = (await conn.execute(select(func.count(), func.count(clicks.c.message_id.distinct()))
                                        .where(cond))).one()
    rows = (await conn.execute(
        select(clicks, messages.c.contact_id, messages.c.contact_name, messages.c.address,
               messages.c.channel)
        .join(messages, messages.c.id == clicks.c.message_id).where(cond)
        .order_by(clicks.c.at, clicks.c.event_id).limit(size).offset(offset))).mappings().all()
    return total, unique, list(rows)
