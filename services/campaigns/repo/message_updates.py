"""What the ledger consumer writes: the forward-only status update (one statement run as
executemany over a batch), counters counted once per event, and the rows a batch is about
to move (locked, for the outcome metrics) or that an unmatched receipt may belong to."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from herald.v1 import common_pb2 as c
from sqlalchemy import DateTime, Integer, bindparam, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.campaigns.repo.rawmany import RawMany
from services.campaigns.repo.state_order import rank_of
from services.campaigns.schema import PROVIDER_KEY, messages


def _keep_or(col: Any, param: str) -> Any:
    """Set the column from the event only when the event carries a value."""
    return case((bindparam(param) == "", col), else_=bindparam(param))


def _error_col(col: Any, param: str, empty: Any = "") -> Any:
    """An error column: replaced by a success (b_good: a deferred-then-accepted email must not
    keep its 451 text), else set from the event only when the event carries a value."""
    return case((bindparam("b_good") == 1, bindparam(param)), (bindparam(param) == empty, col),
                else_=bindparam(param))


# The event's status rank, computed in SQL from shared.states.RANK.
_NEW_RANK = rank_of(bindparam("b_status", type_=Integer))

# One statement for every status event, run as executemany over a whole batch: a row
# moves only forwards (status_rank guard). Per-statement execution cost ~1 ms of CPU
# each through aiosqlite, which made the ledger the pipeline's bottleneck.
STATUS_UPDATE = (
    update(messages)
    .where(
        messages.c.id == bindparam("b_id"),
        # A retry (RetryMessages) bumps attempt: events of older attempts are stale, and
        # attempt 0 (not said) counts as the current one.
        or_(bindparam("b_attempt") == 0, messages.c.attempt <= bindparam("b_attempt")),
        or_(messages.c.status_rank < _NEW_RANK, messages.c.attempt < bindparam("b_attempt")),
    )
    .values(
        status=bindparam("b_status", type_=Integer),
        status_rank=_NEW_RANK,
        carrier_result=_keep_or(messages.c.carrier_result, "b_carrier"),
        error_code=_error_col(messages.c.error_code, "b_code"),
        error_description=_error_col(messages.c.error_description, "b_desc"),
        provider_message_id=_keep_or(messages.c.provider_message_id, "b_provider"),
        route=_keep_or(messages.c.route, "b_route"),
        failure_category=_error_col(messages.c.failure_category, "b_category", 0),
        attempt=case((bindparam("b_attempt") == 0, messages.c.attempt), else_=bindparam("b_attempt")),
        sent_at=func.coalesce(messages.c.sent_at, bindparam("b_sent_at", type_=DateTime(timezone=True))),
        delivered_at=func.coalesce(bindparam("b_delivered_at", type_=DateTime(timezone=True)),
                                   messages.c.delivered_at),
        updated_at=bindparam("b_at", type_=DateTime(timezone=True)),
    )
)

_STATUS_UPDATE_MANY = RawMany(STATUS_UPDATE)


async def apply_statuses(conn: AsyncConnection, rows: list[dict[str, Any]]) -> int | None:
    """Apply a batch of status rows (ledger.status_params); how many rows moved, or None when
    the driver does not say (asyncpg's executemany reports no row counts)."""
    if RawMany.usable(conn):
        return await _STATUS_UPDATE_MANY.run(conn, rows)
    res = await conn.execute(STATUS_UPDATE, rows)
    return res.rowcount if conn.dialect.supports_sane_multi_rowcount else None


async def bump(conn: AsyncConnection, message_id: str, column: str) -> bool:
    """views, clicks or replies + 1; whether the message exists."""
    col = messages.c[column]
    res = await conn.execute(update(messages).where(messages.c.id == message_id).values({col: col + 1}))
    return bool(res.rowcount)


async def current_states(conn: AsyncConnection, ids: Iterable[str]) -> dict[str, list[int]]:
    """id -> [status, attempt, channel] of the rows a batch is about to update. Locked (in id
    order, on PostgreSQL) so that what the batch counts is what it changes even when ledger
    replicas share the durable."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    res = await conn.execute(
        select(messages.c.id, messages.c.status, messages.c.attempt, messages.c.channel)
        .where(messages.c.id.in_(wanted)).order_by(messages.c.id).with_for_update())
    return {r.id: [r.status, r.attempt, r.channel] for r in res}


async def by_provider_keys(conn: AsyncConnection, keys: Iterable[str]) -> list[Any]:
    """SMS rows whose normalised provider id (schema.PROVIDER_KEY, indexed) is one of keys."""
    found = await conn.execute(select(
        messages.c.id, messages.c.campaign_id, messages.c.workspace_id, messages.c.address,
        messages.c.channel, messages.c.status, messages.c.attempt, messages.c.variant,
        messages.c.route, messages.c.provider_message_id,
    ).where(PROVIDER_KEY.in_(sorted(keys)), messages.c.channel == c.CHANNEL_SMS))
    return list(found.mappings())
