"""Exports of the send detail: built in the background (QUEUED -> RUNNING -> DONE), kept
in SQL until they expire."""

from __future__ import annotations

import csv
import io
import logging
from datetime import datetime, timedelta
from typing import Any

from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from prometheus_client import Counter
from sqlalchemy import select, update

from services.campaigns.filters import message_filter
from services.campaigns.schema import exports, messages
from services.campaigns.store import Store
from shared import auth
from shared.timeutil import Clock, aware, to_ts

log = logging.getLogger("herald.campaigns.exports")
EXPORTS = Counter("herald_campaigns_exports_total", "Exports built, by result.", ["result"])

COLUMNS = ["message_id", "recipient", "contact_name", "channel", "status", "carrier_result",
           "error_code", "error_description", "failure_category", "created_at", "sent_at",
           "delivered_at", "views", "clicks", "replies", "variant", "attempt"]


def iso(dt: datetime | None) -> str:
    return aware(dt).isoformat() if dt else ""


def render(rows: list[Any], fmt: int, pii: bool) -> bytes:
    """CSV (or tab-separated TXT) with one column per custom field after the fixed ones."""
    field_names = sorted({k for r in rows for k in (r["fields"] or {})})
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t" if fmt == pb.EXPORT_FORMAT_TXT else ",", lineterminator="\n")
    w.writerow(COLUMNS + [f"field:{k}" for k in field_names])
    who = auth.Principal("export", "", frozenset(), pii)
    for r in rows:
        recipient = (auth.mask_phone(r["address"], who) if r["channel"] == c.CHANNEL_SMS
                     else r["address"])
        w.writerow([
            r["id"], recipient, r["contact_name"], c.Channel.Name(r["channel"]).removeprefix("CHANNEL_"),
            c.MessageStatus.Name(r["status"]).removeprefix("MESSAGE_STATUS_"), r["carrier_result"],
            r["error_code"], r["error_description"],
            c.FailureCategory.Name(r["failure_category"]).removeprefix("FAILURE_CATEGORY_")
            if r["failure_category"] else "",
            iso(r["created_at"]), iso(r["sent_at"]), iso(r["delivered_at"]), r["views"], r["clicks"],
            r["replies"], r["variant"], r["attempt"],
        ] + [(r["fields"] or {}).get(k, "") for k in field_names])
    return buf.getvalue().encode("utf-8")


def to_proto(r: Any, now: datetime) -> pb.Export:
    status = r["status"]
    if status == pb.EXPORT_STATUS_DONE and r["expires_at"] and aware(r["expires_at"]) <= now:
        status = pb.EXPORT_STATUS_EXPIRED
    ext = "txt" if r["format"] == pb.EXPORT_FORMAT_TXT else "csv"
    out = pb.Export(id=r["id"], campaign_id=r["campaign_id"], format=r["format"] or pb.EXPORT_FORMAT_CSV,
                    filter=r["filter"], status=status, rows=r["rows"], error=r["error"],
                    author=r["author"], file_name=f"campaign-{r['campaign_id'][:8]}-{r['id'][:8]}.{ext}")
    if r["content"] is not None:
        out.size_bytes = len(r["content"])
    for f in ("created_at", "finished_at", "expires_at"):
        ts = to_ts(aware(r[f]))
        if ts is not None:
            getattr(out, f).CopyFrom(ts)
    return out


async def run_pending(store: Store, clock: Clock, ttl: float) -> int:
    """Build every QUEUED export (compare-and-set to RUNNING, so one replica builds each)
    and drop the files of expired ones. Returns how many were built."""
    now = clock.now()
    async with store.engine.begin() as conn:
        await conn.execute(update(exports).where(
            exports.c.status == pb.EXPORT_STATUS_DONE, exports.c.expires_at <= now,
        ).values(status=pb.EXPORT_STATUS_EXPIRED, content=None))
        queued = (await conn.execute(select(exports.c.id).where(
            exports.c.status == pb.EXPORT_STATUS_QUEUED).order_by(exports.c.created_at))).all()
    built = 0
    for (export_id,) in queued:
        async with store.engine.begin() as conn:
            res = await conn.execute(update(exports).where(
                exports.c.id == export_id, exports.c.status == pb.EXPORT_STATUS_QUEUED,
            ).values(status=pb.EXPORT_STATUS_RUNNING))
            if res.rowcount != 1:
                continue
            ex = (await conn.execute(select(exports).where(exports.c.id == export_id))).mappings().one()
        try:
            async with store.engine.connect() as conn:
                rows = (await conn.execute(select(messages).where(
                    messages.c.campaign_id == ex["campaign_id"], *message_filter(ex["filter"]))
                    .order_by(messages.c.created_at, messages.c.id))).mappings().all()
            content = render(list(rows), ex["format"], ex["pii"])
            done = clock.now()
            async with store.engine.begin() as conn:
                await conn.execute(update(exports).where(exports.c.id == export_id).values(
                    status=pb.EXPORT_STATUS_DONE, content=content, rows=len(rows), finished_at=done,
                    expires_at=done + timedelta(seconds=ttl)))
            EXPORTS.labels("done").inc()
            built += 1
        except Exception as exc:
            log.exception("export failed", extra={"export_id": export_id})
            EXPORTS.labels("failed").inc()
            async with store.engine.begin() as conn:
                await conn.execute(update(exports).where(exports.c.id == export_id).values(
                    status=pb.EXPORT_STATUS_FAILED, error=str(exc), finished_at=clock.now()))
                row = await store.get_row(conn, ex["campaign_id"], None)
                if row is not None:
                    await Store.job_error(conn, row, "export", f"export {export_id}: {exc}", clock.now())
    return built
