"""Exports of the send detail: built in the background (QUEUED -> RUNNING -> DONE), kept
in SQL until they expire.

The replica building an export holds a lease on it, renewed with every chunk it writes; if
the process dies mid-build, the lease runs out and the next exports pass of any replica takes
the export over (its partial file dropped, built again from the start), up to MAX_ATTEMPTS
builds; then it is FAILED with an error saying so and what to do."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncConnection

from services.campaigns.filters import message_filter
from services.campaigns.repo import campaigns as campaigns_repo
from services.campaigns.repo import exports as exports_repo
from services.campaigns.repo import job_errors
from services.campaigns.schema import messages
from services.campaigns.store import Store
from shared import channels
from shared.masking import HasPii, mask_text
from shared.templating import BUILTIN_VARIABLES, CHANNEL_VARIABLES
from shared.timeutil import Clock, aware, to_ts

log = logging.getLogger("herald.campaigns.exports")
S = c.MessageStatus
EXPORTS = Counter("herald_campaigns_exports_total",
                  "Export builds, by result: done, failed, taken_over (a build whose replica died "
                  "started again), interrupted (failed: interrupted MAX_ATTEMPTS times), lost (a "
                  "build stopped: another replica took it over), given_back (at a clean stop).",
                  ["result"])
# Builds of one export before an interrupted one is FAILED instead of started again.
MAX_ATTEMPTS = 3
INTERRUPTED = ("the export's build was interrupted {n} times: the campaigns process building it "
               "stopped before it finished (crash, out of memory or node loss). Create the export "
               "again; if it happens again, check the campaigns process's memory use and restarts "
               "(OOMKilled, restart count) and export fewer rows at a time (a filter).")

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
    out.attempts = r["attempts"] or 0
    out.status_detail = status_detail(r, status, now)
    for f in ("created_at", "finished_at", "expires_at"):
        ts = to_ts(aware(r[f]))
        if ts is not None:
            getattr(out, f).CopyFrom(ts)
    return out


class LeaseLost(Exception):
    """The build's export is not its own any more: another replica took it over."""


@dataclass
class Lease:
    """One build's hold on its export: every chunk is written in the same transaction as the
    renewal of the lease, which succeeds only while the export is still this build's (owner
    and attempt), so two builders never interleave chunks."""

    store: Store
    clock: Clock
    owner: str
    seconds: float
    export_id: str
    attempt: int
    renewed: float = 0.0  # when the lease was last renewed (monotonic)

    def until(self) -> datetime:
        return self.clock.now() + timedelta(seconds=self.seconds)

    async def write(self, seq: int, data: bytes, rows: int) -> None:
        """Renew the lease and add one chunk of the file, in one transaction."""
        async with self.store.write() as conn:
            if not await exports_repo.renew(conn, self.export_id, self.owner, self.attempt,
                                            self.until(), rows):
                raise LeaseLost(self.export_id)
            await exports_repo.add_chunk(conn, self.export_id, seq, data)
        self.renewed = time.monotonic()

    async def keep(self) -> None:
        """Renew the lease if a third of it went by since the last renewal (reads without
        writes: the header's pass over the keys)."""
        if time.monotonic() - self.renewed < self.seconds / 3:
            return
        async with self.store.write() as conn:
            if not await exports_repo.renew(conn, self.export_id, self.owner, self.attempt, self.until()):
                raise LeaseLost(self.export_id)
        self.renewed = time.monotonic()


def status_detail(r: Any, status: int, now: datetime) -> str:
    """Export.status_detail: the status explained for a person."""
    attempts, rows = r["attempts"] or 0, r["rows"] or 0
    if status == pb.EXPORT_STATUS_QUEUED:
        again = f" ({attempts} earlier build(s) interrupted)" if attempts else ""
        return f"waiting for a campaigns replica to build it{again}"
    if status == pb.EXPORT_STATUS_RUNNING:
        until = aware(r["lease_until"])
        if until is None or until < now:
            since = f" since {iso(until)}" if until else ""
            nxt = (f"another replica builds it again shortly (attempt {attempts + 1} of {MAX_ATTEMPTS})"
                   if attempts < MAX_ATTEMPTS else
                   f"it was interrupted {attempts} times and is marked FAILED shortly")
            return f"its build stopped (the replica building it has not renewed its lease{since}); {nxt}"
        again = (f" again after {attempts - 1} interrupted build(s)" if attempts > 1 else "")
        return f"being built{again}: {rows} rows written (attempt {max(attempts, 1)} of {MAX_ATTEMPTS})"
    if status == pb.EXPORT_STATUS_DONE:
        return f"ready: {rows} rows, downloadable until {iso(r['expires_at'])}"
    if status == pb.EXPORT_STATUS_EXPIRED:
        return f"expired at {iso(r['expires_at'])}: its file was dropped; create the export again"
    if status == pb.EXPORT_STATUS_FAILED:
        return f"failed: {r['error']}" if r["error"] else "failed"
    return ""


async def run_pending(store: Store, clock: Clock, ttl: float, owner: str = "", lease: float = 10.0) -> int:
    """Build the exports waiting for a builder and drop the files of expired ones; returns how
    many were built. A QUEUED export is claimed (compare-and-set to RUNNING, so one replica
    builds each) under a lease of `lease` seconds held by `owner`; a RUNNING one whose lease
    ran out (its builder died) is taken over and built again from the start, up to
    MAX_ATTEMPTS builds, then FAILED with an explanation."""
    now = clock.now()
    async with store.write() as conn:
        queued = await exports_repo.expire_and_list_queued(conn, now)
    async with store.read() as conn:
        stale = await exports_repo.list_stale(conn, now)
    built = 0
    for export_id in stale:
        ex = await _take_over(store, clock, export_id, owner, lease)
        if ex is not None:
            built += await _build_leased(store, clock, ttl, ex, owner, lease)
    for export_id in queued:
        async with store.write() as conn:
            ex = await exports_repo.claim(conn, export_id, owner, clock.now() + timedelta(seconds=lease))
        if ex is not None:
            built += await _build_leased(store, clock, ttl, ex, owner, lease)
    return built


async def _take_over(store: Store, clock: Clock, export_id: str, owner: str, lease: float) -> Any:
    """A stale RUNNING export: leased to this replica for one more build (the row), or FAILED
    once it used MAX_ATTEMPTS builds (None; None too when another replica got there first)."""
    now = clock.now()
    async with store.write() as conn:
        ex = await exports_repo.take_over(conn, export_id, owner, now, now + timedelta(seconds=lease),
                                          MAX_ATTEMPTS)
        if ex is not None:
            EXPORTS.labels("taken_over").inc()
            log.warning("export build interrupted: building it again", extra={
                "export_id": export_id, "attempt": ex["attempts"], "max_attempts": MAX_ATTEMPTS})
            return ex
        failed = await exports_repo.end_interrupted(conn, export_id, now, MAX_ATTEMPTS,
                                                    INTERRUPTED.format(n=MAX_ATTEMPTS))
        if failed is not None:
            EXPORTS.labels("interrupted").inc()
            log.error("export build interrupted too often: failed", extra={
                "export_id": export_id, "attempts": failed["attempts"]})
            await _job_error(conn, failed["campaign_id"], export_id, failed["error"], now)
    return None


async def _build_leased(store: Store, clock: Clock, ttl: float, ex: Any, owner: str, lease: float) -> int:
    """Build a claimed export under its lease: 1 if this build finished it (DONE), else 0."""
    export_id, attempt = ex["id"], ex["attempts"]
    held = Lease(store, clock, owner, lease, export_id, attempt, time.monotonic())
    try:
        rows = await build(store, ex, held)
        done = clock.now()
        async with store.write() as conn:
            if not await exports_repo.finish(conn, export_id, owner, attempt, status=pb.EXPORT_STATUS_DONE,
                                             rows=rows, finished_at=done,
                                             expires_at=done + timedelta(seconds=ttl)):
                raise LeaseLost(export_id)
        EXPORTS.labels("done").inc()
        return 1
    except LeaseLost:
        # Another replica took it over (this one stalled past its lease): its build counts.
        EXPORTS.labels("lost").inc()
        log.warning("export build lost its lease: stopped", extra={"export_id": export_id, "attempt": attempt})
    except asyncio.CancelledError:
        # The replica is stopping: give the export back rather than leave it to its lease.
        await _give_back(store, export_id, owner, attempt)
        raise
    except Exception as exc:
        log.exception("export failed", extra={"export_id": export_id})
        async with store.write() as conn:
            # No partial file: the chunks written so far go with the failure.
            now = clock.now()
            if await exports_repo.finish(conn, export_id, owner, attempt, status=pb.EXPORT_STATUS_FAILED,
                                         error=str(exc), finished_at=now, rows=0):
                EXPORTS.labels("failed").inc()
                await exports_repo.drop_chunks(conn, export_id)
                await _job_error(conn, ex["campaign_id"], export_id, str(exc), now)
    return 0


async def _give_back(store: Store, export_id: str, owner: str, attempt: int) -> None:
    """Best effort (the database may be going away too): if it fails, the lease runs out and
    another replica takes the export over."""
    try:
        async with store.write() as conn:
            if await exports_repo.give_back(conn, export_id, owner, attempt):
                EXPORTS.labels("given_back").inc()
                log.info("export given back at stop", extra={"export_id": export_id})
    except Exception as exc:
        log.warning("export not given back at stop", extra={
            "export_id": export_id, "error": f"{type(exc).__name__}: {exc}"})


async def _job_error(conn: AsyncConnection, campaign_id: str, export_id: str, error: str, now: datetime) -> None:
    """The campaign's Errors tab (Job) says what happened to the export."""
    row = await campaigns_repo.get(conn, campaign_id, None)
    if row is not None:
        await job_errors.add(conn, row, "export", f"export {export_id}: {error}", now)


async def build(store: Store, ex: Any, lease: Lease) -> int:
    """Write the export's file as chunks (the header, then one per batch of BATCH rows), each
    in its own short transaction while the export is RUNNING, so neither memory nor a
    transaction grows with the export; each renews the lease (LeaseLost if another replica
    took the export over: nothing more is written). Returns the row count.

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
        await lease.keep()
    upto, field_names = after, sorted(names)
    await lease.write(0, render_header(field_names, fmt), 0)
    count, seq, after = 0, 0, None
    while upto is not None:
        async with store.read() as conn:
            rows = await exports_repo.matching_batch(conn, cid, conds, after, BATCH, upto=upto)
        if not rows:
            break
        seq += 1
        count += len(rows)
        await lease.write(seq, render_rows(rows, fmt, field_names), count)
        after = (rows[-1]["created_at"], rows[-1]["id"])
    return count
