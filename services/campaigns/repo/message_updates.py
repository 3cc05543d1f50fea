"""What the ledger consumer writes: the forward-only status update (one statement run as
executemany over a batch), counters counted once per event, and the rows a batch is about
to move (locked, for the outcome metrics) or that an unmatched receipt may belong to."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from herald.v1 import common_pb2 as c
from sqlalchemy import (
    ARRAY,
    DateTime,
    Integer,
    String,
    bindparam,
    case,
    column,
    delete,
    false,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from services.campaigns.repo.rawmany import RawMany
from services.campaigns.repo.state_order import rank_of
from services.campaigns.schema import (
    HAS_PROVIDER_ID,
    PROVIDER_KEY,
    count_backfill,
    message_counts,
    messages,
)

# The event columns of a status row (ledger.status_params) and their SQL types.
_EVENT = {"b_id": String, "b_status": Integer, "b_good": Integer, "b_carrier": String, "b_code": String,
          "b_desc": String, "b_provider": String, "b_category": Integer, "b_route": String,
          "b_attempt": Integer, "b_sent_at": DateTime(timezone=True),
          "b_delivered_at": DateTime(timezone=True), "b_at": DateTime(timezone=True)}
# Typed only where the type matters (the times: SQLite's bind processors), as ever.
_TYPED = {"b_status", "b_sent_at", "b_delivered_at", "b_at"}


def _status_update(v: Callable[[str], Any], *match: Any) -> Any:
    """The forward-only update of a message by one event, its values v(name): a row moves
    only forwards (status_rank guard)."""
    def keep_or(col: Any, name: str) -> Any:  # set from the event only when it carries a value
        return case((v(name) == "", col), else_=v(name))

    def error_col(col: Any, name: str, empty: Any = "") -> Any:
        # Replaced by a success (b_good: a deferred-then-accepted email must not keep its 451
        # text), else set from the event only when the event carries a value.
        return case((v("b_good") == 1, v(name)), (v(name) == empty, col), else_=v(name))

    new_rank = rank_of(v("b_status"))  # computed in SQL from shared.states.RANK
    return update(messages).where(
        *match,
        # A retry (RetryMessages) bumps attempt: events of older attempts are stale, and
        # attempt 0 (not said) counts as the current one.
        or_(v("b_attempt") == 0, messages.c.attempt <= v("b_attempt")),
        or_(messages.c.status_rank < new_rank, messages.c.attempt < v("b_attempt")),
    ).values(
        status=v("b_status"), status_rank=new_rank,
        carrier_result=keep_or(messages.c.carrier_result, "b_carrier"),
        error_code=error_col(messages.c.error_code, "b_code"),
        error_description=error_col(messages.c.error_description, "b_desc"),
        provider_message_id=keep_or(messages.c.provider_message_id, "b_provider"),
        route=keep_or(messages.c.route, "b_route"),
        failure_category=error_col(messages.c.failure_category, "b_category", 0),
        attempt=case((v("b_attempt") == 0, messages.c.attempt), else_=v("b_attempt")),
        sent_at=func.coalesce(messages.c.sent_at, v("b_sent_at")),
        delivered_at=func.coalesce(v("b_delivered_at"), messages.c.delivered_at),
        updated_at=v("b_at"),
    )


def _param(name: str) -> Any:
    return bindparam(name, type_=_EVENT[name]) if name in _TYPED else bindparam(name)


# One statement for every status event, run as executemany over a whole batch (SQLite).
# Per-statement execution cost ~1 ms of CPU each through aiosqlite, which made the ledger
# the pipeline's bottleneck.
STATUS_UPDATE = _status_update(_param, messages.c.id == bindparam("b_id"))
_STATUS_UPDATE_MANY = RawMany(STATUS_UPDATE)

# PostgreSQL: the batch as arrays, unnested into one UPDATE ... FROM: one statement per batch,
# so message_counts' statement trigger sums a whole batch in one upsert (asyncpg's executemany
# runs the statement once per row, and the trigger with it).
_BATCH = func.unnest(*(bindparam(f"a_{k}", type_=ARRAY(t)) for k, t in _EVENT.items())).table_valued(
    *(column(k, t) for k, t in _EVENT.items())).render_derived(name="b")
_BATCH_UPDATE = _status_update(lambda name: _BATCH.c[name], messages.c.id == _BATCH.c.b_id)


def _rounds(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The batch as rounds in which every message occurs once (an UPDATE ... FROM applies one
    source row per target row): a message's k-th event goes to round k, so each message's
    events still apply in order."""
    rounds: list[list[dict[str, Any]]] = []
    seen: dict[str, int] = {}
    for r in rows:
        k = seen.get(r["b_id"], 0)
        seen[r["b_id"]] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(r)
    return rounds


async def apply_statuses(conn: AsyncConnection, rows: list[dict[str, Any]]) -> int | None:
    """Apply a batch of status rows (ledger.status_params); how many rows moved, or None on
    PostgreSQL, whose count the ledger's metrics have never had (status_batched)."""
    if RawMany.usable(conn):
        return await _STATUS_UPDATE_MANY.run(conn, rows)
    if conn.dialect.name != "postgresql":
        res = await conn.execute(STATUS_UPDATE, rows)
        return res.rowcount if conn.dialect.supports_sane_multi_rowcount else None
    for batch in _rounds(rows):
        await conn.execute(_BATCH_UPDATE, {f"a_{k}": [r[k] for r in batch] for k in _EVENT})
    return None


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


def by_provider_keys_query(keys: Iterable[str]) -> Any:
    """by_provider_keys' query: it states HAS_PROVIDER_ID, the predicate of the partial index
    on PROVIDER_KEY, so the planner may read it (and an id that normalises to "" matches
    none of the rows without one)."""
    return select(
        messages.c.id, messages.c.campaign_id, messages.c.workspace_id, messages.c.address,
        messages.c.channel, messages.c.status, messages.c.attempt, messages.c.variant,
        messages.c.route, messages.c.provider_message_id,
    ).where(PROVIDER_KEY.in_(sorted(keys)), HAS_PROVIDER_ID, messages.c.channel == c.CHANNEL_SMS)


async def by_provider_keys(conn: AsyncConnection, keys: Iterable[str]) -> list[Any]:
    """SMS rows whose normalised provider id (schema.PROVIDER_KEY, indexed) is one of keys."""
    return list((await conn.execute(by_provider_keys_query(keys))).mappings())


async def hold_counts(conn: AsyncConnection) -> None:
    """Hold off every writer of message_counts until this transaction ends, so the ledger and
    its counters read here agree (PostgreSQL: writers wait at their trigger; SQLite: the
    database's one write lock, taken by a write that changes nothing)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("LOCK TABLE message_counts IN SHARE ROW EXCLUSIVE MODE"))
    else:
        await conn.execute(update(message_counts).where(false()).values(n=message_counts.c.n))


async def recount(conn: AsyncConnection, campaign_id: str) -> None:
    """A campaign's message_counts rebuilt from its ledger (under hold_counts)."""
    await conn.execute(delete(message_counts).where(message_counts.c.campaign_id == campaign_id))
    await conn.execute(text(count_backfill(conn.dialect.name, "m.campaign_id = :cid")), {"cid": campaign_id})
