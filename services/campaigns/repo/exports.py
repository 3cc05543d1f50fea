"""Export rows: QUEUED -> RUNNING -> DONE (or FAILED), the file kept until it expires.

A RUNNING export is leased by the replica building it (lease_owner, lease_until, renewed as
it writes); `attempts` numbers its builds and fences every write of one: a build writes only
while the row is still RUNNING under its owner and attempt, so a build taken over by another
replica (take_over) can neither add chunks nor finish."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from herald.v1 import campaigns_pb2 as pb
from sqlalchemy import ColumnElement, and_, delete, func, insert, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.campaigns.schema import export_chunks, exports, messages


def _without_content() -> list[Any]:
    """Every column but the file, and the file's length: the old single blob's, or the sum
    of its chunks'."""
    chunked = (select(func.sum(func.length(export_chunks.c.data)))
               .where(export_chunks.c.export_id == exports.c.id).scalar_subquery())
    return [col for col in exports.c if col.name != "content"] + [
        func.coalesce(func.length(exports.c.content), chunked).label("content_len")]


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
    """Drop the files (blob or chunks) of expired exports; the ids of the QUEUED ones,
    oldest first."""
    expired = [r[0] for r in (await conn.execute(select(exports.c.id).where(
        exports.c.status == pb.EXPORT_STATUS_DONE, exports.c.expires_at <= now))).all()]
    if expired:
        await conn.execute(update(exports).where(exports.c.id.in_(expired))
                           .values(status=pb.EXPORT_STATUS_EXPIRED, content=None))
        await conn.execute(delete(export_chunks).where(export_chunks.c.export_id.in_(expired)))
    return [r[0] for r in (await conn.execute(select(exports.c.id).where(
        exports.c.status == pb.EXPORT_STATUS_QUEUED).order_by(exports.c.created_at))).all()]


def _stale(now: datetime) -> ColumnElement[bool]:
    """A RUNNING export whose builder stopped renewing its lease (or that never had one: rows
    from before leases)."""
    return and_(exports.c.status == pb.EXPORT_STATUS_RUNNING,
                or_(exports.c.lease_until.is_(None), exports.c.lease_until < now))


def _held(export_id: str, owner: str, attempt: int) -> ColumnElement[bool]:
    """The export is still RUNNING in this build (owner and attempt): the fence of its writes."""
    return and_(exports.c.id == export_id, exports.c.status == pb.EXPORT_STATUS_RUNNING,
                exports.c.lease_owner == owner, exports.c.attempts == attempt)


async def _row(conn: AsyncConnection, export_id: str) -> Any:
    return (await conn.execute(select(*_without_content()).where(exports.c.id == export_id))).mappings().one()


async def list_stale(conn: AsyncConnection, now: datetime) -> list[str]:
    """The RUNNING exports whose lease ran out (their builder died), oldest first."""
    return [r[0] for r in (await conn.execute(select(exports.c.id).where(_stale(now))
                                              .order_by(exports.c.created_at))).all()]


async def claim(conn: AsyncConnection, export_id: str, owner: str, until: datetime) -> Any:
    """QUEUED -> RUNNING leased to owner until `until`, one more attempt (compare-and-set, so
    one replica builds each): the row, or None."""
    res = await conn.execute(update(exports).where(
        exports.c.id == export_id, exports.c.status == pb.EXPORT_STATUS_QUEUED,
    ).values(status=pb.EXPORT_STATUS_RUNNING, lease_owner=owner, lease_until=until,
             attempts=exports.c.attempts + 1, rows=0))
    if res.rowcount != 1:
        return None
    return await _row(conn, export_id)


async def take_over(conn: AsyncConnection, export_id: str, owner: str, now: datetime,
                    until: datetime, max_attempts: int) -> Any:
    """A stale RUNNING export with fewer than max_attempts builds: leased to owner as one more
    attempt, its partial file dropped (compare-and-set, so one taker). The row, or None."""
    res = await conn.execute(update(exports).where(
        exports.c.id == export_id, _stale(now), exports.c.attempts < max_attempts,
    ).values(lease_owner=owner, lease_until=until, attempts=exports.c.attempts + 1, rows=0))
    if res.rowcount != 1:
        return None
    await drop_chunks(conn, export_id)
    return await _row(conn, export_id)


async def end_interrupted(conn: AsyncConnection, export_id: str, now: datetime, max_attempts: int,
                          error: str) -> Any:
    """A stale RUNNING export that used its max_attempts builds: FAILED with `error`, its
    partial file dropped (compare-and-set). The row, or None."""
    res = await conn.execute(update(exports).where(
        exports.c.id == export_id, _stale(now), exports.c.attempts >= max_attempts,
    ).values(status=pb.EXPORT_STATUS_FAILED, finished_at=now, lease_owner="", lease_until=None,
             rows=0, error=error))
    if res.rowcount != 1:
        return None
    await drop_chunks(conn, export_id)
    return await _row(conn, export_id)


async def renew(conn: AsyncConnection, export_id: str, owner: str, attempt: int, until: datetime,
                rows: int | None = None) -> bool:
    """Extend this build's lease (and record the rows written so far); False: the build is
    not this export's any more (taken over, or cancelled)."""
    values: dict[str, Any] = {"lease_until": until}
    if rows is not None:
        values["rows"] = rows
    res = await conn.execute(update(exports).where(_held(export_id, owner, attempt)).values(**values))
    return res.rowcount == 1


async def finish(conn: AsyncConnection, export_id: str, owner: str, attempt: int, **values: Any) -> bool:
    """End this build (DONE or FAILED with values) and its lease; False: not this build's."""
    res = await conn.execute(update(exports).where(_held(export_id, owner, attempt)).values(
        lease_owner="", lease_until=None, **values))
    return res.rowcount == 1


async def give_back(conn: AsyncConnection, export_id: str, owner: str, attempt: int) -> bool:
    """A replica stopping mid-build: the export back to QUEUED for another one, its partial
    file dropped; the attempt is not counted (nothing went wrong with it)."""
    res = await conn.execute(update(exports).where(_held(export_id, owner, attempt)).values(
        status=pb.EXPORT_STATUS_QUEUED, lease_owner="", lease_until=None,
        attempts=exports.c.attempts - 1, rows=0))
    if res.rowcount != 1:
        return False
    await drop_chunks(conn, export_id)
    return True


# --- the file in chunks -----------------------------------------------------------------------
async def matching_batch(conn: AsyncConnection, campaign_id: str, conds: Sequence[Any],
                         after: tuple[Any, str] | None, limit: int, upto: tuple[Any, str] | None = None,
                         columns: Sequence[Any] | None = None) -> list[Any]:
    """The next `limit` ledger rows of the campaign matching conds in the export's order
    (created_at, id): keys after `after` (excluded) up to `upto` (included). One bounded read."""
    key = tuple_(messages.c.created_at, messages.c.id)
    q = select(*(columns or [messages])).where(messages.c.campaign_id == campaign_id, *conds)
    if after is not None:
        q = q.where(key > tuple_(*after))
    if upto is not None:
        q = q.where(key <= tuple_(*upto))
    q = q.order_by(messages.c.created_at, messages.c.id).limit(limit)
    return list((await conn.execute(q)).mappings().all())


async def add_chunk(conn: AsyncConnection, export_id: str, seq: int, data: bytes) -> None:
    await conn.execute(insert(export_chunks).values(export_id=export_id, seq=seq, data=data))


async def chunk(conn: AsyncConnection, export_id: str, seq: int) -> bytes | None:
    """One chunk of the file, or None past the last."""
    row = (await conn.execute(select(export_chunks.c.data).where(
        export_chunks.c.export_id == export_id, export_chunks.c.seq == seq))).first()
    return None if row is None else bytes(row[0])


async def last_seq(conn: AsyncConnection, export_id: str) -> int | None:
    """The seq of the file's last chunk (None: no chunks)."""
    return (await conn.execute(select(func.max(export_chunks.c.seq)).where(
        export_chunks.c.export_id == export_id))).scalar()


async def drop_chunks(conn: AsyncConnection, export_id: str) -> None:
    await conn.execute(delete(export_chunks).where(export_chunks.c.export_id == export_id))
