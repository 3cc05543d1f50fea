"""Campaign and ledger persistence (SQLAlchemy Core async)."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.campaigns import lifecycle
from services.campaigns.repo import campaigns as campaigns_repo
from services.campaigns.repo import idempotency, job_errors
from services.campaigns.repo import messages as messages_repo
from shared import pagetoken
from shared.errors import invalid
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
        raise invalid({"page_token": "not a token this service issued"}) from exc


def _key_digest(key: list[Any], bound_to: str) -> str:
    """Ties a position to its query (a check against mix-ups, not a secret: a token is only
    ever a position, and every read is scoped to the caller's workspace anyway)."""
    return hashlib.sha256(json.dumps([key, bound_to]).encode()).hexdigest()[:16]


def encode_key_token(value: datetime, last_id: str, bound_to: str) -> str:
    """A keyset page token: the last row's (sort value, id), bound to its query
    (shared.pagetoken.binding) so it is refused under another campaign, filter or order."""
    key = [value.isoformat(), last_id]
    raw = json.dumps({"k": key, "d": _key_digest(key, bound_to)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_page_token(token: str, bound_to: str) -> tuple[int, tuple[datetime, str] | None]:
    """(offset, keyset position) of a page token: a keyset token gives (0, (value, id)); a
    bound offset token (shared.pagetoken) or a legacy "o:<n>" one (issued before keyset
    pages, still honoured for a client mid-walk) gives (offset, None)."""
    if not token:
        return 0, None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except Exception as exc:
        raise invalid({"page_token": "not a page token this service issued"}) from exc
    if raw.startswith("o:"):
        return decode_token(token), None
    try:
        obj = json.loads(raw)
    except Exception as exc:
        raise invalid({"page_token": "not a page token this service issued"}) from exc
    if not isinstance(obj, dict) or "k" not in obj:
        return pagetoken.decode(token, bound_to), None
    try:
        key, digest = obj["k"], obj["d"]
        if not (isinstance(key, list) and len(key) == 2 and all(isinstance(k, str) for k in key)
                and isinstance(digest, str)):
            raise ValueError("bad token")
        value = datetime.fromisoformat(key[0])
    except Exception as exc:
        raise invalid({"page_token": "not a page token this service issued"}) from exc
    if digest != _key_digest(key, bound_to):
        raise invalid({"page_token": "this page token belongs to another list, filter or order"})
    return 0, (value, key[1])


class Store:
    """The campaigns database: its transactions and the repositories' most used calls
    (services.campaigns.repo holds the SQL, one module per aggregate)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def read(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection for reads (autocommit-free, rolled back on exit)."""
        return self.engine.connect()

    def write(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """One transaction: everything done through it commits together or not at all."""
        return self.engine.begin()

    # --- idempotency ------------------------------------------------------------
    async def replay(self, workspace: str, method: str, request_id: str, cls: type,
                     fingerprint: str = "") -> Any:
        """The first answer to this request_id, or None. AIP-155: a request_id is bound to its
        call, so a stored fingerprint that differs from this call's is refused (rows written
        before fingerprints existed have none and replay as before)."""
        if not request_id:
            return None
        async with self.read() as conn:
            row = await idempotency.find(conn, workspace, method, request_id)
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
            await idempotency.remember(conn, workspace, method, request_id, response, now, fingerprint)

    # --- campaigns -------------------------------------------------------------------
    add_history = staticmethod(campaigns_repo.add_history)
    set_status = staticmethod(campaigns_repo.set_status)
    audit = staticmethod(campaigns_repo.audit)
    job_error = staticmethod(job_errors.add)

    async def get_row(self, conn: AsyncConnection, campaign_id: str, workspace: str | None,
                      for_update: bool = False) -> Any:
        return await campaigns_repo.get(conn, campaign_id, workspace, for_update)

    async def progress(self, conn: AsyncConnection, campaign_ids: list[str]) -> dict[str, pb.Progress]:
        return await messages_repo.progress(conn, campaign_ids)

    async def history(self, conn: AsyncConnection, campaign_id: str) -> list[pb.StateChange]:
        return await campaigns_repo.history(conn, campaign_id)

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
        async with self.read() as conn:
            row = await self.get_row(conn, campaign_id, workspace)
            if row is None:
                return None
            prog, daily, held = await messages_repo.overview(conn, campaign_id)
            hist = await self.history(conn, campaign_id)
        cp = self.to_proto(row, prog, hist)
        cp.daily.extend(daily)
        cp.held = held
        return cp

    async def save_targets(self, conn: AsyncConnection, campaign_id: str, recipients: list) -> None:
        await campaigns_repo.save_targets(conn, campaign_id, recipients)

    async def load_targets(self, campaign_id: str) -> list[c.Recipient]:
        async with self.read() as conn:
            return await campaigns_repo.load_targets(conn, campaign_id)


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
__all__ = ["Store", "outcome", "new_id", "mask_campaign", "encode_token", "decode_token",
           "encode_key_token", "decode_page_token"]
