"""The message ledger (one row per recipient per channel): build, dispatch, completion and
read queries. A campaign's progress is in repo/message_progress.py (re-exported here); the
forward-only status update the ledger consumer applies in repo/message_updates.py."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from sqlalchemy import JSON, and_, bindparam, case, cast, column, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import ARRAY, Text

from services.campaigns import lifecycle
from services.campaigns.repo.message_progress import Overview as Overview  # re-exported
from services.campaigns.repo.message_progress import overview as overview
from services.campaigns.repo.message_progress import overview_scan as overview_scan
from services.campaigns.repo.message_progress import progress as progress
from services.campaigns.repo.message_progress import progress_scan as progress_scan
from services.campaigns.repo.rawmany import RawMany
from services.campaigns.schema import FINAL_OUTCOME, campaigns, message_counts, messages
from shared import channels, states

S = c.MessageStatus
_WAITING = (messages.c.status == S.MESSAGE_STATUS_QUEUED, messages.c.dispatched_at.is_(None))


# --- read side (progress: repo/message_progress.py) -------------------------------------------
async def count(conn: AsyncConnection, campaign_id: str, *conds: Any) -> int:
    return (await conn.execute(select(func.count()).select_from(messages).where(
        messages.c.campaign_id == campaign_id, *conds))).scalar_one()


async def get(conn: AsyncConnection, message_id: str) -> Any:
    return (await conn.execute(select(messages).where(messages.c.id == message_id))).mappings().one()


async def matching(conn: AsyncConnection, campaign_id: str, conds: Sequence[Any],
                   in_order: bool = False) -> list[Any]:
    """Every row of the campaign matching conds (services.campaigns.filters), by creation
    (in_order: ties broken by id, the order of an export)."""
    ordering = (messages.c.created_at, messages.c.id) if in_order else (messages.c.created_at,)
    return list((await conn.execute(select(messages).where(
        messages.c.campaign_id == campaign_id, *conds).order_by(*ordering))).mappings().all())


# ListMessages' order_by names -> column. KEYSET: the orders a page may continue from the last
# row's (value, id); sent_at may be NULL (and the dialects place NULLs differently), so "sent"
# pages continue by offset.
ORDERABLE = {"created": messages.c.created_at, "created_at": messages.c.created_at,
             "sent": messages.c.sent_at, "sent_at": messages.c.sent_at}
KEYSET = {"created", "created_at"}


async def page(conn: AsyncConnection, campaign_id: str, conds: Sequence[Any], order: str, desc: bool,
               size: int, offset: int, after: tuple[Any, str] | None = None,
               statuses: Sequence[int] | None = None) -> tuple[int, list[Any]]:
    """(total, one page of up to size + 1 rows: the extra one says another page follows)
    ordered by ORDERABLE[order], ties by id in the same direction. after: the previous page's
    last (value, id) (KEYSET orders), read instead of skipping `offset` rows. statuses: the
    filter is only these statuses, so the total is summed from message_counts (kept exact by
    triggers) instead of counting the campaign's matching ledger rows."""
    if statuses is not None:
        total = int((await conn.execute(select(func.coalesce(func.sum(message_counts.c.n), 0)).where(
            message_counts.c.campaign_id == campaign_id,
            message_counts.c.status.in_(list(statuses))))).scalar_one())
    else:
        total = await count(conn, campaign_id, *conds)
    rows = (await conn.execute(page_query(campaign_id, conds, order, desc, size, offset, after))).mappings().all()
    return total, list(rows)


def page_query(campaign_id: str, conds: Sequence[Any], order: str, desc: bool, size: int,
               offset: int, after: tuple[Any, str] | None = None) -> Any:
    """The SELECT of one page (see page)."""
    col = ORDERABLE[order]
    ordering = [col.desc() if desc else col.asc(), messages.c.id.desc() if desc else messages.c.id]
    q = select(messages).where(messages.c.campaign_id == campaign_id, *conds)
    if after is not None:
        value, last_id = after
        # (col, id) past (value, last_id), written so the leading col bound is a plain range.
        q = q.where(col <= value, or_(col < value, messages.c.id < last_id)) if desc else \
            q.where(col >= value, or_(col > value, messages.c.id > last_id))
    else:
        q = q.offset(offset)
    return q.order_by(*ordering).limit(size + 1)


async def states_page(conn: AsyncConnection, campaign_id: str, after: str, limit: int) -> list[Any]:
    """(id, status, channel, held) by id after `after`: one short keyset read."""
    return list((await conn.execute(
        select(messages.c.id, messages.c.status, messages.c.channel, messages.c.held)
        .where(messages.c.campaign_id == campaign_id, messages.c.id > after)
        .order_by(messages.c.id).limit(limit))).all())


# --- build -----------------------------------------------------------------------------------
_ADD_MANY = RawMany(sqlite.insert(messages).on_conflict_do_nothing())


async def add_missing(conn: AsyncConnection, rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Insert the rows the ledger does not have yet (INSERT ... ON CONFLICT DO NOTHING); rows
    already there are left as they are. Returns (the new rows, how many were kept)."""
    if RawMany.usable(conn):  # SQLite
        have = {r[0] for r in await conn.execute(select(messages.c.id).where(
            messages.c.id.in_([r["id"] for r in rows])))}
        new = [r for r in rows if r["id"] not in have]
        if new:
            await _ADD_MANY.run(conn, new)
        return new, len(have)
    # PostgreSQL: the INSERT says which rows it added (RETURNING). A check of which ids exist
    # first (id IN (<the chunk's 1,000 ids>)) was planned as a pass over the whole ledger
    # whenever the statistics were those of a smaller table, once per chunk: 1 s a chunk at
    # 60,000 messages, and growing. One INSERT ... SELECT FROM unnest(<a column's values>,
    # ...) for the whole chunk, so message_counts' statement trigger runs once per chunk (the
    # driver's executemany is one statement, and one trigger run, per row; a multi-row VALUES
    # cost ~1 ms of CPU per row to compile).
    if not rows:
        return [], 0
    keys = tuple(rows[0])
    added = {r[0] for r in await conn.execute(_insert_unnest(keys), {f"a_{k}": [
        json.dumps(r[k]) if k == "fields" else r[k] for r in rows] for k in keys})}
    new = [r for r in rows if r["id"] in added]
    return new, len(rows) - len(new)


@functools.cache
def _insert_unnest(keys: tuple[str, ...]) -> Any:
    """PostgreSQL: INSERT the rows given as one array per column (fields as JSON text),
    returning the ids it added."""
    def typ(k: str) -> Any:
        return Text() if k == "fields" else messages.c[k].type
    src = func.unnest(*(bindparam(f"a_{k}", type_=ARRAY(typ(k))) for k in keys)).table_valued(
        *(column(k, typ(k)) for k in keys)).render_derived(name="b")
    cols = [cast(src.c[k], JSON) if k == "fields" else src.c[k] for k in keys]
    return (postgresql.insert(messages).from_select(list(keys), select(*cols)).on_conflict_do_nothing()
            .returning(messages.c.id))


async def add(conn: AsyncConnection, values: dict[str, Any]) -> Any:
    await conn.execute(messages.insert().values(**values))
    return await get(conn, values["id"])


async def announce_page(conn: AsyncConnection, campaign_id: str, after: str, limit: int) -> list[Any]:
    """Built rows not held for an A/B winner, by id after `after`."""
    return list((await conn.execute(select(
        messages.c.id, messages.c.status, messages.c.failure_category, messages.c.error_description,
        messages.c.address, messages.c.variant, messages.c.created_at).where(
        messages.c.campaign_id == campaign_id, messages.c.held.is_(False), messages.c.id > after)
        .order_by(messages.c.id).limit(limit))).all())


# --- dispatch --------------------------------------------------------------------------------
async def dispatch_counts(conn: AsyncConnection, campaign_id: str) -> tuple[int, int]:
    """(messages, of which dispatched) for pacing: the total from the counters, the
    undispatched ones from ix_messages_waiting (no pass over the campaign's ledger)."""
    total = (await conn.execute(select(func.coalesce(func.sum(message_counts.c.n), 0)).where(
        message_counts.c.campaign_id == campaign_id))).scalar_one()
    undispatched = (await conn.execute(select(func.count()).where(
        messages.c.campaign_id == campaign_id, messages.c.dispatched_at.is_(None)))).scalar_one()
    return int(total), int(total) - int(undispatched)


JOB_COLUMNS = (messages.c.id, messages.c.attempt, messages.c.address, messages.c.contact_id,
               messages.c.variant, messages.c.fields, messages.c.created_at)


def next_to_send_query(campaign_id: str, n: int) -> Any:
    """next_to_send's query (read from ix_messages_waiting)."""
    return (select(*JOB_COLUMNS).where(
        messages.c.campaign_id == campaign_id, *_WAITING, messages.c.held.is_(False))
        .order_by(messages.c.created_at, messages.c.id).limit(n))


async def next_to_send(conn: AsyncConnection, campaign_id: str, n: int) -> list[Any]:
    """The next n waiting messages in audience order (held A/B rows wait for the winner):
    the columns a job is made of."""
    return list((await conn.execute(next_to_send_query(campaign_id, n))).mappings().all())


def _locked_in_id_order(conn: AsyncConnection, ids: list[str]) -> Any:
    """The rows of `ids`, for an UPDATE's WHERE id IN (...). On PostgreSQL a subquery that
    locks them in id order, the order the ledger locks its batches in (current_states): an
    UPDATE alone locks in the table's physical order, and the ledger and the dispatcher,
    each holding rows the other waited for, deadlocked (seen with two replicas: 3-24 per
    20,000 messages, each costing a second)."""
    if conn.dialect.name != "postgresql":
        return ids  # SQLite: one writer at a time, no row locks
    return (select(messages.c.id).where(messages.c.id.in_(ids)).order_by(messages.c.id)
            .with_for_update())


async def mark_dispatched(conn: AsyncConnection, ids: list[str], now: datetime) -> None:
    # The gateway may already have reported SUBMITTED: only QUEUED rows move to SENDING.
    # One statement: each row (and its index entries) is rewritten once.
    queued = messages.c.status == S.MESSAGE_STATUS_QUEUED
    await conn.execute(update(messages).where(messages.c.id.in_(_locked_in_id_order(conn, ids))).values(
        dispatched_at=now,
        status=case((queued, S.MESSAGE_STATUS_SENDING), else_=messages.c.status),
        status_rank=case((queued, states.RANK[S.MESSAGE_STATUS_SENDING]), else_=messages.c.status_rank)))


async def waiting_ids(conn: AsyncConnection, campaign_id: str) -> list[str]:
    """Messages never handed to a gateway and still QUEUED (held ones included)."""
    return [r[0] for r in await conn.execute(select(messages.c.id).where(
        messages.c.campaign_id == campaign_id, *_WAITING))]


async def waiting_count(conn: AsyncConnection, campaign_id: str) -> int:
    return await count(conn, campaign_id, *_WAITING)


async def any_to_send(conn: AsyncConnection, campaign_id: str) -> bool:
    return (await conn.execute(select(messages.c.id).where(
        messages.c.campaign_id == campaign_id, *_WAITING, messages.c.held.is_(False))
        .limit(1))).first() is not None


async def finish_queued(conn: AsyncConnection, ids: list[str], status: int, category: int,
                        reason: str, now: datetime) -> list[tuple[str, int]]:
    """Move these messages, if still QUEUED, to a final status: the (id, attempt) moved.
    Their rows are locked in id order first (PostgreSQL), as the ledger locks its batches:
    what is returned is what is moved, and the two never deadlock."""
    moved: list[tuple[str, int]] = []
    for i in range(0, len(ids), 1000):
        chunk = (messages.c.id.in_(ids[i:i + 1000]), messages.c.status == S.MESSAGE_STATUS_QUEUED)
        moved += [(r.id, r.attempt) for r in await conn.execute(
            select(messages.c.id, messages.c.attempt).where(*chunk).order_by(messages.c.id)
            .with_for_update())]
        await conn.execute(update(messages).where(*chunk).values(
            status=status, status_rank=states.RANK[status], failure_category=category,
            error_description=reason, updated_at=now))
    return moved


# --- completion ------------------------------------------------------------------------------
def unsettled_condition() -> Any:
    """Not final yet for completion, by each channel's final statuses (shared.channels: an
    email the relay accepted is settled)."""
    return and_(messages.c.status.not_in(list(states.FINAL)), *(
        ~and_(messages.c.channel == s.channel, messages.c.status.in_(sorted(s.final_statuses - states.FINAL)))
        for s in channels.specs() if s.final_statuses - states.FINAL))


def awaiting_receipt() -> list[int]:
    """Channels whose SUBMITTED messages still wait for a receipt (SMS): the ones the
    assumed-delivery sweep settles."""
    return [s.channel for s in channels.specs() if S.MESSAGE_STATUS_SUBMITTED not in s.final_statuses]


async def unsettled_count(conn: AsyncConnection, campaign_id: str) -> int:
    return await count(conn, campaign_id, unsettled_condition())


async def any_unsettled(conn: AsyncConnection, campaign_id: str) -> bool:
    """Whether a message is not final yet: stops at the first one (the completion check runs
    every tick; a count would read the whole campaign each time)."""
    # Positive status lists (not NOT IN): the (campaign_id, status) index finds them directly,
    # also at the tail of a large campaign where nearly every message is final.
    for s in channels.specs():
        open_ = sorted(set(states.RANK) - set(states.FINAL) - set(s.final_statuses))
        if open_ and (await conn.execute(select(messages.c.id).where(
                messages.c.campaign_id == campaign_id, messages.c.status.in_(open_),
                messages.c.channel == s.channel).limit(1))).first() is not None:
            return True
    return False


def last_outcomes_query(campaign_id: str, n: int, since: datetime | None,
                        ignored_codes: Sequence[str]) -> Any:
    """last_outcomes' query: it states FINAL_OUTCOME, the predicate of the partial index
    ix_messages_campaign_outcomes, so the planner may read it."""
    q = (select(messages.c.status).where(
        messages.c.campaign_id == campaign_id, messages.c.dispatched_at.is_not(None),
        FINAL_OUTCOME, messages.c.updated_at.is_not(None),
        messages.c.error_code.not_in(list(ignored_codes)))
        .order_by(messages.c.updated_at.desc()).limit(n))
    if since is not None:
        q = q.where(messages.c.updated_at > since)
    return q


async def last_outcomes(conn: AsyncConnection, campaign_id: str, n: int, since: datetime | None,
                        ignored_codes: Sequence[str]) -> list[int]:
    """The statuses of the n latest final outcomes of dispatched messages (since `since`),
    outcomes with an error_code in ignored_codes left out."""
    return [r[0] for r in await conn.execute(last_outcomes_query(campaign_id, n, since, ignored_codes))]


async def submitted_sms_page(conn: AsyncConnection, statuses: Sequence[str], cutoff: datetime,
                             after: str, limit: int) -> list[Any]:
    """Messages awaiting a receipt (SMS) SUBMITTED before cutoff in started campaigns of these statuses (or DONE TRIGGER
    campaigns), by id after `after`."""
    cols = (messages.c.id, messages.c.attempt, messages.c.campaign_id, messages.c.workspace_id,
            messages.c.address, messages.c.variant, messages.c.route, messages.c.channel)
    return list((await conn.execute(
        select(*cols).select_from(messages.join(campaigns, campaigns.c.id == messages.c.campaign_id))
        .where(campaigns.c.channel.in_(awaiting_receipt()),
               or_(campaigns.c.status.in_(list(statuses)),
                   and_(campaigns.c.status == lifecycle.DONE,
                        campaigns.c.mode == pb.CAMPAIGN_MODE_TRIGGER)),
               campaigns.c.started_at.is_not(None),
               messages.c.status == S.MESSAGE_STATUS_SUBMITTED,
               messages.c.channel == campaigns.c.channel,
               func.coalesce(messages.c.sent_at, messages.c.updated_at) < cutoff,
               messages.c.id > after)
        .order_by(messages.c.id).limit(limit))).all())


# --- retries and A/B promotion ---------------------------------------------------------------
RETRY_COLUMNS = (messages.c.id, messages.c.status, messages.c.failure_category, messages.c.attempt,
                 messages.c.address, messages.c.dispatched_at, messages.c.error_description)


async def retry_candidates(conn: AsyncConnection, campaign_id: str, conds: Sequence[Any],
                           ids: Iterable[str], only_failed: bool) -> list[Any]:
    q = [messages.c.campaign_id == campaign_id, *conds]
    ids = list(ids)
    if ids:
        q.append(messages.c.id.in_(ids))
    if only_failed:
        q.append(messages.c.status == S.MESSAGE_STATUS_FAILED)
    return list((await conn.execute(select(*RETRY_COLUMNS).where(*q))).all())


async def requeue(conn: AsyncConnection, message_id: str, attempt: int, now: datetime) -> None:
    """A failed message queued again as a new attempt, its previous outcome cleared."""
    await conn.execute(update(messages).where(messages.c.id == message_id).values(
        attempt=attempt, status=S.MESSAGE_STATUS_QUEUED, status_rank=states.RANK[S.MESSAGE_STATUS_QUEUED],
        dispatched_at=None, sent_at=None, delivered_at=None, carrier_result="",
        error_code="", error_description="", failure_category=0, route="",
        provider_message_id="", updated_at=now))


async def release_held(conn: AsyncConnection, campaign_id: str, variant: str, now: datetime) -> list[Any]:
    """Held A/B rows released to `variant`: their (id, address, fields) before the change."""
    held = list((await conn.execute(select(messages.c.id, messages.c.address, messages.c.fields).where(
        messages.c.campaign_id == campaign_id, messages.c.held.is_(True)))).all())
    await conn.execute(update(messages).where(
        messages.c.campaign_id == campaign_id, messages.c.held.is_(True)).values(
        held=False, variant=variant, updated_at=now))
    return held


async def set_previews(conn: AsyncConnection, previews: dict[str, str]) -> None:
    """message id -> content preview."""
    if not previews:
        return
    if len(set(previews.values())) == 1:  # the same preview for everyone: one statement
        await conn.execute(update(messages).where(messages.c.id.in_(list(previews))).values(
            content_preview=next(iter(previews.values()))))
        return
    await conn.execute(update(messages).where(messages.c.id == bindparam("b_id")).values(
        content_preview=bindparam("b_preview")),
        [{"b_id": k, "b_preview": v} for k, v in previews.items()])
