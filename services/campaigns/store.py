"""Campaign and ledger persistence (SQLAlchemy Core async)."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from sqlalchemy import and_, case, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.campaigns import lifecycle
from services.campaigns.schema import (
    audit_events,
    campaign_targets,
    campaigns,
    idempotency,
    job_errors,
    messages,
    state_history,
)
from shared.idempotency import mismatch
from shared.masking import HasPii, mask_text
from shared.timeutil import aware, to_ts

S = c.MessageStatus


def new_id() -> str:
    return str(uuid.uuid4())


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def decode_token(token: str) -> int:
    if not token:
        return 0
    try:
        raw = base64.urlsafe_b64decode(token.encode()).decode()
        if not raw.startswith("o:"):
            raise ValueError(raw)
        return max(int(raw[2:]), 0)
    except Exception as exc:
        from shared.errors import invalid

        raise invalid({"page_token": "not a token this service issued"}) from exc


class Store:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # --- idempotency ------------------------------------------------------------
    async def replay(self, workspace: str, method: str, request_id: str, cls: type,
                     fingerprint: str = "") -> Any:
        """The first answer to this request_id, or None. AIP-155: a request_id is bound to its
        call, so a stored fingerprint that differs from this call's is refused (rows written
        before fingerprints existed have none and replay as before)."""
        if not request_id:
            return None
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(idempotency.c.response, idempotency.c.fingerprint).where(
                idempotency.c.workspace_id == workspace, idempotency.c.method == method,
                idempotency.c.request_id == request_id))).first()
        if row is None:
            return None
        if fingerprint and row[1] and row[1] != fingerprint:
            raise mismatch(request_id)
        out = cls()
        out.ParseFromString(row[0])
        return out

    @staticmethod
    async def remember(conn: AsyncConnection, workspace: str, method: str, request_id: str,
                       response: Any, now: datetime, fingerprint: str = "") -> None:
        """Store the unmasked first answer; callers mask it for whoever asks (also on replay)."""
        if request_id:
            await conn.execute(insert(idempotency).values(
                workspace_id=workspace, method=method, request_id=request_id,
                response=response.SerializeToString(), created_at=now,
                fingerprint=fingerprint or None))

    # --- campaigns -------------------------------------------------------------------
    @staticmethod
    async def add_history(conn: AsyncConnection, campaign_id: str, status: str, reason: str,
                          actor: str, now: datetime) -> None:
        await conn.execute(insert(state_history).values(
            campaign_id=campaign_id, status=status, reason=reason, actor=actor, at=now))

    async def get_row(self, conn: AsyncConnection, campaign_id: str, workspace: str | None,
                      for_update: bool = False) -> Any:
        q = select(campaigns).where(campaigns.c.id == campaign_id)
        if workspace is not None:
            q = q.where(campaigns.c.workspace_id == workspace)
        if for_update and conn.dialect.name == "postgresql":
            q = q.with_for_update()
        return (await conn.execute(q)).mappings().first()

    @staticmethod
    async def set_status(conn: AsyncConnection, row: Any, target: str, reason: str, actor: str,
                         now: datetime, **values: Any) -> None:
        lifecycle.check(row["id"], row["status"], target)
        # Compare-and-set on the current status: a concurrent change loses cleanly.
        res = await conn.execute(update(campaigns).where(
            campaigns.c.id == row["id"], campaigns.c.status == row["status"],
        ).values(status=target, status_reason=reason, updated_at=now, **values))
        if res.rowcount != 1:
            raise lifecycle.illegal(row["id"], "changed concurrently", target)
        await Store.add_history(conn, row["id"], target, reason, actor, now)

    async def progress(self, conn: AsyncConnection, campaign_ids: list[str]) -> dict[str, pb.Progress]:
        """Progress as the contract defines it (StatsService uses the same definitions): one
        counter per current status, processed = left QUEUED/SENDING, and sent = handed to the
        carrier in the current attempt (sent_at is set on SUBMITTED and kept when the carrier
        fails the message afterwards)."""
        out = {cid: pb.Progress() for cid in campaign_ids}
        if not campaign_ids:
            return out
        handed = case((messages.c.sent_at.is_not(None), 1), else_=0)
        rows = await conn.execute(
            select(messages.c.campaign_id, messages.c.status, func.count(), func.sum(handed))
            .where(messages.c.campaign_id.in_(campaign_ids))
            .group_by(messages.c.campaign_id, messages.c.status))
        for cid, status, n, sent in rows:
            p = out[cid]
            p.total += n
            p.sent += int(sent or 0)
            if status not in (S.MESSAGE_STATUS_QUEUED, S.MESSAGE_STATUS_SENDING):
                p.processed += n
            name = _PROGRESS_FIELD.get(status)
            if name:
                setattr(p, name, getattr(p, name) + n)
        return out

    async def history(self, conn: AsyncConnection, campaign_id: str) -> list[pb.StateChange]:
        rows = await conn.execute(select(state_history).where(
            state_history.c.campaign_id == campaign_id).order_by(state_history.c.id))
        return [pb.StateChange(status=lifecycle.value(r.status), reason=r.reason, actor=r.actor,
                               at=to_ts(aware(r.at))) for r in rows]

    @staticmethod
    def to_proto(row: Any, progress: pb.Progress | None = None,
                 history: list[pb.StateChange] | None = None) -> pb.Campaign:
        cp = pb.Campaign(
            id=row["id"], workspace_id=row["workspace_id"], name=row["name"],
            channel=row["channel"], status=lifecycle.value(row["status"]), mode=row["mode"],
            sender=row["sender"], author=row["author"],
            content=pb.Content(text=row["content_text"], subject=row["content_subject"],
                               html=row["content_html"], template_name=row["template_name"]),
            category_ids=list(row["category_ids"] or []), auto_start=row["auto_start"],
            moderation=row["moderation"], moderation_note=row["moderation_note"],
            archived=row["archived"], status_reason=row["status_reason"],
            recipients_count=row["recipients_count"], description=row["description"],
            max_rate=row["max_rate"], auto_pause_failures=row["auto_pause_failures"],
        )
        for v in row["variants"] or []:
            ct = v.get("content", {})
            cp.variants.append(pb.Variant(name=v["name"], split_percent=v["split_percent"], content=pb.Content(
                text=ct.get("text", ""), subject=ct.get("subject", ""), html=ct.get("html", ""),
                template_name=ct.get("template_name", ""))))
        cp.test_percent, cp.winner = row["test_percent"], row["winner"]
        if row["window_tz"]:
            cp.window.CopyFrom(pb.SendingWindow(start=row["window_start"], end=row["window_end"],
                                                time_zone=row["window_tz"]))
        for fld in ("start_at", "end_at", "created_at", "started_at", "completed_at", "updated_at"):
            ts = to_ts(aware(row[fld]))
            if ts is not None:
                getattr(cp, fld).CopyFrom(ts)
        if progress is not None:
            cp.progress.CopyFrom(progress)
            if row["status"] in lifecycle.TERMINAL and progress.total:
                cp.outcome = outcome(progress)
        if history:
            cp.history.extend(history)
        return cp

    async def load(self, campaign_id: str, workspace: str | None) -> pb.Campaign | None:
        async with self.engine.connect() as conn:
            row = await self.get_row(conn, campaign_id, workspace)
            if row is None:
                return None
            prog = (await self.progress(conn, [campaign_id]))[campaign_id]
            hist = await self.history(conn, campaign_id)
            daily = await self.daily(conn, campaign_id)
            held = (await conn.execute(select(func.count()).select_from(messages).where(
                messages.c.campaign_id == campaign_id, messages.c.held.is_(True)))).scalar_one()
        cp = self.to_proto(row, prog, hist)
        cp.daily.extend(daily)
        cp.held = held
        return cp

    async def daily(self, conn: AsyncConnection, campaign_id: str) -> list[pb.DailyActivity]:
        """Messages handed off per UTC day, with how many of them were delivered / failed."""
        rows = await conn.execute(select(messages.c.sent_at, messages.c.updated_at, messages.c.status)
                                  .where(messages.c.campaign_id == campaign_id,
                                         messages.c.dispatched_at.is_not(None)))
        days: dict[str, pb.DailyActivity] = {}
        for sent_at, updated_at, status in rows:
            at = aware(sent_at or updated_at)
            if at is None:
                continue
            key = at.astimezone(UTC).date().isoformat()
            d = days.setdefault(key, pb.DailyActivity(date=key))
            if sent_at is not None:
                d.sent += 1
            if status == S.MESSAGE_STATUS_DELIVERED:
                d.delivered += 1
            elif status == S.MESSAGE_STATUS_FAILED:
                d.failed += 1
        return [days[k] for k in sorted(days)]

    @staticmethod
    async def job_error(conn: AsyncConnection, row: Any, stage: str, message: str, now: datetime) -> None:
        await conn.execute(insert(job_errors).values(
            campaign_id=row["id"], workspace_id=row["workspace_id"], stage=stage, message=message, at=now))

    @staticmethod
    async def audit(conn: AsyncConnection, row: Any, action: str, actor: str, now: datetime,
                    note: str = "", before: dict | None = None, after: dict | None = None) -> None:
        await conn.execute(insert(audit_events).values(
            campaign_id=row["id"], workspace_id=row["workspace_id"], action=action, actor=actor,
            note=note, before=before or {}, after=after or {}, at=now))

    async def save_targets(self, conn: AsyncConnection, campaign_id: str, recipients: list) -> None:
        rows = [{"campaign_id": campaign_id, "idx": i, "recipient": r.SerializeToString()}
                for i, r in enumerate(recipients)]
        for i in range(0, len(rows), 1000):
            await conn.execute(insert(campaign_targets), rows[i:i + 1000])

    async def load_targets(self, campaign_id: str) -> list[c.Recipient]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(campaign_targets.c.recipient).where(
                campaign_targets.c.campaign_id == campaign_id).order_by(campaign_targets.c.idx))
            out = []
            for (raw,) in rows:
                r = c.Recipient()
                r.ParseFromString(raw)
                out.append(r)
        return out


_PROGRESS_FIELD = {
    S.MESSAGE_STATUS_QUEUED: "queued", S.MESSAGE_STATUS_SENDING: "sending",
    S.MESSAGE_STATUS_SUBMITTED: "submitted", S.MESSAGE_STATUS_DELIVERED: "delivered",
    S.MESSAGE_STATUS_ASSUMED_DELIVERED: "assumed_delivered", S.MESSAGE_STATUS_DEFERRED: "deferred",
    S.MESSAGE_STATUS_FAILED: "errors", S.MESSAGE_STATUS_OPTED_OUT: "opted_out",
    S.MESSAGE_STATUS_CANCELLED: "cancelled",
}


def mask_campaign(cp: pb.Campaign, principal: HasPii | None) -> pb.Campaign:
    """Phone numbers in a campaign's free text (description, notes, reasons) for a caller
    without pii; answers are stored unmasked so a replay is masked for whoever asks."""
    if principal is not None and principal.pii:
        return cp
    cp.description = mask_text(cp.description, principal)
    cp.moderation_note = mask_text(cp.moderation_note, principal)
    cp.status_reason = mask_text(cp.status_reason, principal)
    for h in cp.history:
        h.reason = mask_text(h.reason, principal)
    return cp


def outcome(p: pb.Progress) -> int:
    if p.errors == 0:
        return pb.CAMPAIGN_OUTCOME_SENT
    if p.errors >= p.total:
        return pb.CAMPAIGN_OUTCOME_ALL_FAILED
    return pb.CAMPAIGN_OUTCOME_PARTIAL


# encode_token/decode_token: legacy offset tokens, kept only until every list RPC uses
# shared.pagetoken (bound to its query).
__all__ = ["Store", "and_", "outcome", "new_id", "mask_campaign", "encode_token", "decode_token"]
