"""Campaign rows (with their variants), inline targets, state history, audit and leases."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.campaigns import lifecycle
from services.campaigns.schema import (
    audit_events,
    campaign_targets,
    campaigns,
    messages,
    state_history,
)
from shared.timeutil import aware, to_ts


async def get(conn: AsyncConnection, campaign_id: str, workspace: str | None,
              for_update: bool = False) -> Any:
    q = select(campaigns).where(campaigns.c.id == campaign_id)
    if workspace is not None:
        q = q.where(campaigns.c.workspace_id == workspace)
    if for_update and conn.dialect.name == "postgresql":
        q = q.with_for_update()
    return (await conn.execute(q)).mappings().first()


async def add(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(insert(campaigns).values(**values))


async def change(conn: AsyncConnection, campaign_id: str, **values: Any) -> None:
    """Set columns that are not the status (moderation, archived, winner, edited fields)."""
    await conn.execute(update(campaigns).where(campaigns.c.id == campaign_id).values(**values))


async def count_recipient(conn: AsyncConnection, campaign_id: str) -> None:
    await conn.execute(update(campaigns).where(campaigns.c.id == campaign_id).values(
        recipients_count=campaigns.c.recipients_count + 1))


async def add_history(conn: AsyncConnection, campaign_id: str, status: str, reason: str,
                      actor: str, now: datetime) -> None:
    await conn.execute(insert(state_history).values(
        campaign_id=campaign_id, status=status, reason=reason, actor=actor, at=now))


async def set_status(conn: AsyncConnection, row: Any, target: str, reason: str, actor: str,
                     now: datetime, **values: Any) -> None:
    lifecycle.check(row["id"], row["status"], target)
    # Compare-and-set on the current status: a concurrent change loses cleanly.
    res = await conn.execute(update(campaigns).where(
        campaigns.c.id == row["id"], campaigns.c.status == row["status"],
    ).values(status=target, status_reason=reason, updated_at=now, **values))
    if res.rowcount != 1:
        raise lifecycle.illegal(row["id"], "changed concurrently", target)
    await add_history(conn, row["id"], target, reason, actor, now)


async def history(conn: AsyncConnection, campaign_id: str) -> list[pb.StateChange]:
    rows = await conn.execute(select(state_history).where(
        state_history.c.campaign_id == campaign_id).order_by(state_history.c.id))
    return [pb.StateChange(status=lifecycle.value(r.status), reason=r.reason, actor=r.actor,
                           at=to_ts(aware(r.at))) for r in rows]


async def audit(conn: AsyncConnection, row: Any, action: str, actor: str, now: datetime,
                note: str = "", before: dict | None = None, after: dict | None = None) -> None:
    await conn.execute(insert(audit_events).values(
        campaign_id=row["id"], workspace_id=row["workspace_id"], action=action, actor=actor,
        note=note, before=before or {}, after=after or {}, at=now))


async def audit_page(conn: AsyncConnection, campaign_id: str, workspace: str | None, size: int,
                     offset: int) -> list[Any]:
    """Oldest first; size + 1 rows tell whether another page follows."""
    conds = [audit_events.c.campaign_id == campaign_id]
    if workspace is not None:
        conds.append(audit_events.c.workspace_id == workspace)
    return list((await conn.execute(select(audit_events).where(*conds).order_by(audit_events.c.id)
                                    .limit(size + 1).offset(offset))).mappings().all())


async def remove(conn: AsyncConnection, campaign_id: str) -> None:
    """A campaign with its ledger, targets and history (its audit stays)."""
    for table in (messages, campaign_targets, state_history):
        await conn.execute(delete(table).where(table.c.campaign_id == campaign_id))
    await conn.execute(delete(campaigns).where(campaigns.c.id == campaign_id))


# --- inline targets ------------------------------------------------------------------
async def save_targets(conn: AsyncConnection, campaign_id: str, recipients: Sequence[c.Recipient]) -> None:
    rows = [{"campaign_id": campaign_id, "idx": i, "recipient": r.SerializeToString()}
            for i, r in enumerate(recipients)]
    for i in range(0, len(rows), 1000):
        await conn.execute(insert(campaign_targets), rows[i:i + 1000])


async def load_targets(conn: AsyncConnection, campaign_id: str) -> list[c.Recipient]:
    rows = await conn.execute(select(campaign_targets.c.recipient).where(
        campaign_targets.c.campaign_id == campaign_id).order_by(campaign_targets.c.idx))
    out = []
    for (raw,) in rows:
        r = c.Recipient()
        r.ParseFromString(raw)
        out.append(r)
    return out


async def drop_targets(conn: AsyncConnection, campaign_id: str) -> None:
    await conn.execute(delete(campaign_targets).where(campaign_targets.c.campaign_id == campaign_id))


# --- lists and counts --------------------------------------------------------------------
def view_conditions(*, moderation_queue: bool, with_new: bool, archived_only: bool,
                    show_archived: bool) -> list[Any]:
    """Which campaigns a list view shows: the moderation queue (NEW only), or every status
    but NEW unless with_new; archived ones only, too, or not at all."""
    conds: list[Any] = []
    if moderation_queue:
        conds.append(campaigns.c.status == lifecycle.NEW)
    elif not with_new:
        conds.append(campaigns.c.status != lifecycle.NEW)
    if archived_only:
        conds.append(campaigns.c.archived.is_(True))
    elif not show_archived:
        conds.append(campaigns.c.archived.is_(False))
    return conds


async def page(conn: AsyncConnection, conds: list[Any], order: Any, desc: bool, size: int,
               offset: int) -> tuple[int, list[Any]]:
    """(total, one page) of the campaigns matching conds (services.campaigns.filters), by the
    column `order` (filters.ORDERABLE), ties by id."""
    ordering = [order.desc() if desc else order.asc(), campaigns.c.id]
    total = (await conn.execute(select(func.count()).select_from(campaigns).where(*conds))).scalar_one()
    rows = (await conn.execute(select(campaigns).where(*conds).order_by(*ordering)
                               .limit(size).offset(offset))).mappings().all()
    return total, list(rows)


async def count_by_status(conn: AsyncConnection, statuses: Sequence[str] | None = None,
                          workspace: str | None = None, since: datetime | None = None) -> dict[str, int]:
    conds = _scope(workspace, since)
    if statuses is not None:
        conds.append(campaigns.c.status.in_(list(statuses)))
    return dict((await conn.execute(select(campaigns.c.status, func.count()).where(*conds)
                                    .group_by(campaigns.c.status))).all())


def _scope(workspace: str | None, since: datetime | None) -> list[Any]:
    conds: list[Any] = []
    if workspace is not None:
        conds.append(campaigns.c.workspace_id == workspace)
    if since is not None:
        conds.append(campaigns.c.created_at >= since)
    return conds


async def awaiting_moderation(conn: AsyncConnection, workspace: str, since: datetime | None) -> int:
    return (await conn.execute(select(func.count()).select_from(campaigns).where(
        *_scope(workspace, since), campaigns.c.status == lifecycle.NEW,
        campaigns.c.moderation == pb.MODERATION_STATE_PENDING))).scalar_one()


async def delivered(conn: AsyncConnection, workspace: str, since: datetime | None) -> int:
    """Messages DELIVERED in the workspace's campaigns (created since)."""
    return (await conn.execute(select(func.count()).select_from(messages).join(
        campaigns, campaigns.c.id == messages.c.campaign_id).where(
        *_scope(workspace, since), messages.c.status == c.MESSAGE_STATUS_DELIVERED))).scalar_one()


async def sending_sibling(conn: AsyncConnection, row: Any) -> str | None:
    """Another non-TRIGGER campaign of the same workspace and channel that is SENDING."""
    busy = (await conn.execute(select(campaigns.c.id).where(
        campaigns.c.workspace_id == row["workspace_id"], campaigns.c.channel == row["channel"],
        campaigns.c.status == lifecycle.SENDING, campaigns.c.mode != pb.CAMPAIGN_MODE_TRIGGER,
        campaigns.c.id != row["id"]).limit(1))).first()
    return None if busy is None else busy[0]


# --- leases ------------------------------------------------------------------------------
async def lease_view(conn: AsyncConnection) -> list[Any]:
    """Every active campaign's lease (id, status, lease_owner, lease_until, created_at), read
    without locks: what a replica counts the live replicas and its fair share from."""
    return list((await conn.execute(select(
        campaigns.c.id, campaigns.c.status, campaigns.c.lease_owner, campaigns.c.lease_until,
        campaigns.c.created_at).where(campaigns.c.status.in_(list(lifecycle.ACTIVE)))
        .order_by(campaigns.c.created_at))).mappings().all())


async def hold_lease(conn: AsyncConnection, campaign_id: str, owner: str, now: datetime,
                     lease_until: datetime) -> bool:
    """Extend this owner's lease of one campaign (or take it back if no live lease of another
    owner holds it) during a long step such as a build; False when another replica holds it."""
    res = await conn.execute(update(campaigns).where(
        campaigns.c.id == campaign_id,
        or_(campaigns.c.lease_owner == owner, campaigns.c.lease_owner == "",
            campaigns.c.lease_until.is_(None), campaigns.c.lease_until < now),
    ).values(lease_owner=owner, lease_until=lease_until))
    return bool(res.rowcount)


async def release_all(conn: AsyncConnection, owner: str) -> int:
    """Give up every lease of this owner (a replica stopping): another replica may take its
    campaigns on its next tick instead of after the lease runs out. Returns how many."""
    res = await conn.execute(update(campaigns).where(campaigns.c.lease_owner == owner)
                             .values(lease_owner="", lease_until=None))
    return int(res.rowcount or 0)


async def claim(conn: AsyncConnection, owner: str, now: datetime, lease_until: datetime,
                take: int | None = None, release: Sequence[str] = (),
                exclude: Sequence[str] = ()) -> list[Any]:
    """Renew this owner's leases on active campaigns but those in `release` (given up: free
    at once for another replica), and lease up to `take` free or expired ones (None: all)
    but those in `exclude`; returns the leased campaigns, oldest first. On PostgreSQL every
    row is selected FOR UPDATE SKIP LOCKED: two replicas never claim the same campaign, and
    a campaign locked elsewhere (a transition in flight) is left out of this tick."""
    active = campaigns.c.status.in_(list(lifecycle.ACTIVE))
    given_up = list(release)
    if given_up:
        await conn.execute(update(campaigns).where(
            campaigns.c.id.in_(given_up), campaigns.c.lease_owner == owner,
        ).values(lease_owner="", lease_until=None))
    mine = select(campaigns.c.id).where(active, campaigns.c.lease_owner == owner)
    if given_up:
        mine = mine.where(campaigns.c.id.not_in(given_up))
    ids = [r[0] for r in await conn.execute(mine.with_for_update(skip_locked=True))]
    if take is None or take > 0:
        free = (select(campaigns.c.id)
                .where(active, or_(campaigns.c.lease_until.is_(None), campaigns.c.lease_until < now),
                       campaigns.c.lease_owner != owner)
                .order_by(campaigns.c.created_at))
        if exclude or given_up:
            free = free.where(campaigns.c.id.not_in([*exclude, *given_up]))
        if take is not None:
            free = free.limit(take)
        ids += [r[0] for r in await conn.execute(free.with_for_update(skip_locked=True))]
    if not ids:
        return []
    rows = (await conn.execute(update(campaigns).where(campaigns.c.id.in_(ids)).values(
        lease_owner=owner, lease_until=lease_until).returning(*campaigns.c))).mappings().all()
    return sorted(rows, key=lambda r: (r["created_at"], r["id"]))
