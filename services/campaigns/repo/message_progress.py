"""A campaign's progress (counts per status, daily activity, held messages): read from the
message_counts table the ledger's triggers keep (schema.py), or counted over the ledger itself
(the *_scan forms: ReconcileCampaign's check of the counters)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.campaigns.schema import message_counts, messages

S = c.MessageStatus
_PROGRESS_FIELD = {
    S.MESSAGE_STATUS_QUEUED: "queued", S.MESSAGE_STATUS_SENDING: "sending",
    S.MESSAGE_STATUS_SUBMITTED: "submitted", S.MESSAGE_STATUS_DELIVERED: "delivered",
    S.MESSAGE_STATUS_ASSUMED_DELIVERED: "assumed_delivered", S.MESSAGE_STATUS_DEFERRED: "deferred",
    S.MESSAGE_STATUS_FAILED: "errors", S.MESSAGE_STATUS_OPTED_OUT: "opted_out",
    S.MESSAGE_STATUS_CANCELLED: "cancelled",
}
def _add_status(p: pb.Progress, status: int, n: int, sent: int) -> None:
    """n messages in `status`, `sent` of them handed to the carrier, added to p."""
    p.total += n
    p.sent += sent
    if status not in (S.MESSAGE_STATUS_QUEUED, S.MESSAGE_STATUS_SENDING):
        p.processed += n
    name = _PROGRESS_FIELD.get(status)
    if name:
        setattr(p, name, getattr(p, name) + n)


async def progress(conn: AsyncConnection, campaign_ids: list[str]) -> dict[str, pb.Progress]:
    """Progress as the contract defines it (StatsService uses the same definitions): one
    counter per current status, processed = left QUEUED/SENDING, and sent = handed to the
    carrier in the current attempt (sent_at is set on SUBMITTED and kept when the carrier
    fails the message afterwards). Read from message_counts (schema), kept by triggers on
    every ledger change: a few rows per campaign, whatever its audience."""
    out = {cid: pb.Progress() for cid in campaign_ids}
    if not campaign_ids:
        return out
    sent = func.sum(case((message_counts.c.sent, message_counts.c.n), else_=0))
    rows = await conn.execute(
        select(message_counts.c.campaign_id, message_counts.c.status, func.sum(message_counts.c.n), sent)
        .where(message_counts.c.campaign_id.in_(campaign_ids))
        .group_by(message_counts.c.campaign_id, message_counts.c.status))
    for cid, status, n, sent_n in rows:
        _add_status(out[cid], status, int(n), int(sent_n))
    return out


async def progress_scan(conn: AsyncConnection, campaign_ids: list[str]) -> dict[str, pb.Progress]:
    """progress() counted from the ledger itself (a pass over every row: the check of the
    counters, see ReconcileCampaign)."""
    out = {cid: pb.Progress() for cid in campaign_ids}
    if not campaign_ids:
        return out
    rows = await conn.execute(
        select(messages.c.campaign_id, messages.c.status, func.count(), func.count(messages.c.sent_at))
        .where(messages.c.campaign_id.in_(campaign_ids))
        .group_by(messages.c.campaign_id, messages.c.status))
    for cid, status, n, sent in rows:
        _add_status(out[cid], status, n, int(sent or 0))
    return out


Overview = tuple[pb.Progress, list[pb.DailyActivity], int]


async def overview(conn: AsyncConnection, campaign_id: str) -> Overview:
    """(progress, daily activity per UTC day handed off, held count) of one campaign, from
    message_counts: O(statuses x days) rows instead of the campaign's ledger."""
    mc = message_counts.c
    rows = await conn.execute(
        select(mc.status, mc.held, mc.day, func.sum(mc.n), func.sum(case((mc.sent, mc.n), else_=0)))
        .where(mc.campaign_id == campaign_id)
        .group_by(mc.status, mc.held, mc.day).having(func.sum(mc.n) != 0))
    return _overview((status, held, day or None, int(n), int(sent)) for status, held, day, n, sent in rows)


async def overview_scan(conn: AsyncConnection, campaign_id: str) -> Overview:
    """overview() counted from the ledger itself (the check of the counters)."""
    dispatched = messages.c.dispatched_at.is_not(None)
    day = case((dispatched, _utc_day(conn, func.coalesce(messages.c.sent_at, messages.c.updated_at))),
               else_=None).label("day")
    rows = await conn.execute(
        select(messages.c.status, messages.c.held, day, func.count(), func.count(messages.c.sent_at))
        .where(messages.c.campaign_id == campaign_id)
        .group_by(messages.c.status, messages.c.held, day))
    return _overview((status, held, d, n, int(sent or 0)) for status, held, d, n, sent in rows)


def _overview(groups: Iterable[tuple[int, bool, str | None, int, int]]) -> Overview:
    """(status, held, day or None, messages, of which sent) groups -> overview()."""
    prog, days, held = pb.Progress(), {}, 0
    for status, is_held, d, n, sent in groups:
        _add_status(prog, status, n, sent)
        if is_held:
            held += n
        if d is None:
            continue
        a = days.setdefault(d, pb.DailyActivity(date=d))
        a.sent += sent
        if status == S.MESSAGE_STATUS_DELIVERED:
            a.delivered += n
        elif status == S.MESSAGE_STATUS_FAILED:
            a.failed += n
    return prog, [days[k] for k in sorted(days)], held


def _utc_day(conn: AsyncConnection, col: Any) -> Any:
    """A stored time's UTC date as 'YYYY-MM-DD' (schema.count_day says the same for the
    counters). SQLite keeps UTC times as ISO text."""
    if conn.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", col), "YYYY-MM-DD")
    return func.substr(col, 1, 10)
