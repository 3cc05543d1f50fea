"""Exports of the send detail: built in the background (QUEUED -> RUNNING -> DONE), kept
in SQL until they expire."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from prometheus_client import Counter

from services.campaigns.filters import message_filter
from services.campaigns.repo import exports as exports_repo
from services.campaigns.schema import messages
from services.campaigns.store import Store
from shared import channels
from shared.masking import HasPii, mask_text
from shared.templating import BUILTIN_VARIABLES, CHANNEL_VARIABLES
from shared.timeutil import Clock, aware, to_ts

log = logging.getLogger("herald.campaigns.exports")
S = c.MessageStatus
EXPORTS = Counter("herald_campaigns_exports_total", "Exports built, by result.", ["result"])

# The export's channel column ("SMS", "EMAIL") -> its registry entry (masking).
_SPECS_BY_NAME = {c.Channel.Name(s.channel).removeprefix("CHANNEL_"): s for s in channels.specs()}
# Ledger rows per read and per chunk of the file (~1 MB of CSV).
BATCH = 5000
COLUMNS = ["message_id", "recipient", "contact_name", "channel", "status", "carrier_result",
           "error_code", "error_description", "failure_category", "created_at", "sent_at",
           "delivered_at", "views", "clicks", "replies", "variant", "attempt"]


# Template variables every row carries besides the contact's custom fields.
BUILTINS = frozenset(BUILTIN_VARIABLES) | {v for vs in CHANNEL_VARIABLES.values() for v in vs}


def iso(dt: datetime | None) -> str:
    return aware(dt).isoformat() if dt else ""


def custom_fields(fields: dict | None) -> dict[str, str]:
    """The contact's custom fields of a ledger row: the row keeps every template variable
    (MessageJob.fields), the built-ins (phone, email, names, ...) have their own columns."""
    return {k: v for k, v in (fields or {}).items() if k not in BUILTINS}


def render(rows: list[Any], fmt: int) -> bytes:
    """CSV (or tab-separated TXT) with one column per custom field after the fixed ones.
    Stored unmasked: DownloadExport masks by the downloader's rights (mask_export)."""
    names = sorted({k for r in rows for k in custom_fields(r["fields"])})
    return render_header(names, fmt) + render_rows(rows, fmt, names)


def render_header(field_names: list[str], fmt: int) -> bytes:
    return _csv([COLUMNS + [f"field:{k}" for k in field_names]], fmt)


def render_rows(rows: list[Any], fmt: int, field_names: list[str]) -> bytes:
    """The rows' lines as render writes them under a header of field_names."""
    out = []
    for r in rows:
        fields = custom_fields(r["fields"])
        out.append([
            r["id"], r["address"], r["contact_name"], c.Channel.Name(r["channel"]).removeprefix("CHANNEL_"),
            c.MessageStatus.Name(r["status"]).removeprefix("MESSAGE_STATUS_"), r["carrier_result"],
            r["error_code"], r["error_description"],
            c.FailureCategory.Name(r["failure_category"]).removeprefix("FAILURE_CATEGORY_")
            if r["failure_category"] else "",
            iso(r["created_at"]), iso(r["sent_at"]), iso(r["delivered_at"]), r["views"], r["clicks"],
            r["replies"], r["variant"], r["attempt"],
        ] + [fields.get(k, "") for k in field_names])
    return _csv(out, fmt)


def _csv(lines: list[list[Any]], fmt: int) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter(fmt), lineterminator="\n").writerows(lines)
    return buf.getvalue().encode("utf-8")


def delimiter(fmt: int) -> str:
    return "\t" if fmt == pb.EXPORT_FORMAT_TXT else ","


def mask_export(data: bytes, fmt: int, who: HasPii) -> bytes:
    """The export as this downloader may see it: phone numbers masked unless pii, whoever
    built it. Only the cells that can carry a number are touched (ids and times never are)."""
    if who.pii:
        return data
    rows = csv.reader(io.StringIO(data.decode("utf-8")), delimiter=delimiter(fmt))
    header = next(rows, None)
    if header is None:
        return data
    return _csv([header], fmt) + _mask_rows(rows, header, fmt, who)


def export_header(data: bytes, fmt: int) -> list[str]:
    """The column names of a file's first chunk (the header line)."""
    return next(csv.reader(io.StringIO(data.decode("utf-8")), delimiter=delimiter(fmt)), [])


def mask_chunk(data: bytes, header: list[str], fmt: int, who: HasPii) -> bytes:
    """A chunk of whole rows (no header line) masked as mask_export masks them in the file."""
    if who.pii:
        return data
    return _mask_rows(csv.reader(io.StringIO(data.decode("utf-8")), delimiter=delimiter(fmt)),
                      header, fmt, who)


def _mask_rows(rows: Iterable[list[str]], header: list[str], fmt: int, who: HasPii) -> bytes:
    recipient, channel = header.index("recipient"), header.index("channel")
    texts = [i for i, name in enumerate(header)
             if name in ("error_description", "contact_name") or name.startswith("field:")]
    out = []
    for row in rows:
        spec = _SPECS_BY_NAME.get(row[channel])
        if spec is not None:
            row[recipient] = spec.mask(row[recipient], who.pii)
        for i in texts:
            row[i] = mask_text(row[i], who)
        out.append(row)
    return _csv(out, fmt)


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
    async with store.write() as conn:
        queued = await exports_repo.expire_and_list_queued(conn, now)
    built = 0
    for export_id in queued:
        async with store.write() as conn:
            ex = await exports_repo.claim(conn, export_id)
        if ex is None:
            continue
        try:
            rows = await build(store, ex)
            done = clock.now()
            async with store.write() as conn:
                await exports_repo.finish(conn, export_id, status=pb.EXPORT_STATUS_DONE, rows=rows,
                                          finished_at=done, expires_at=done + timedelta(seconds=ttl))
            EXPORTS.labels("done").inc()
            built += 1
        except Exception as exc:
            log.exception("export failed", extra={"export_id": export_id})
            EXPORTS.labels("failed").inc()
            async with store.write() as conn:
                # No partial file: the chunks written so far go with the failure.
                await exports_repo.drop_chunks(conn, export_id)
                await exports_repo.finish(conn, export_id, status=pb.EXPORT_STATUS_FAILED, error=str(exc),
                                          finished_at=clock.now())
                row = await store.get_row(conn, ex["campaign_id"], None)
                if row is not None:
                    await Store.job_error(conn, row, "export", f"export {export_id}: {exc}", clock.now())
    return built


async def build(store: Store, ex: Any) -> int:
    """Write the export's file as chunks (the header, then one per batch of BATCH rows), each
    in its own short transaction while the export is RUNNING, so neither memory nor a
    transaction grows with the export. Returns the row count.

    The header names every custom field of the rows, so a first pass reads only the keys
    (and where the export ends: rows added later are left out of both passes)."""
    cid, conds, fmt = ex["campaign_id"], message_filter(ex["filter"]), ex["format"]
    names: set[str] = set()
    after = None
    while True:
        async with store.read() as conn:
            keys = await exports_repo.matching_batch(
                conn, cid, conds, after, BATCH, columns=[messages.c.created_at, messages.c.id, messages.c.fields])
        if not keys:
            break
        names.update(k for r in keys for k in custom_fields(r["fields"]))
        after = (keys[-1]["created_at"], keys[-1]["id"])
    upto, field_names = after, sorted(names)
    async with store.write() as conn:
        await exports_repo.add_chunk(conn, ex["id"], 0, render_header(field_names, fmt))
    count, seq, after = 0, 0, None
    while upto is not None:
        async with store.read() as conn:
            rows = await exports_repo.matching_batch(conn, cid, conds, after, BATCH, upto=upto)
        if not rows:
            break
        seq += 1
        async with store.write() as conn:
            await exports_repo.add_chunk(conn, ex["id"], seq, render_rows(rows, fmt, field_names))
        count += len(rows)
        after = (rows[-1]["created_at"], rows[-1]["id"])
    return count
