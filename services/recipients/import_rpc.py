"""ImportContacts: contacts from a client stream, validated in worker processes and written
in large transactions while the next rows are read (bounded memory whatever the stream)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from herald.v1 import recipients_pb2 as pb
from sqlalchemy.exc import IntegrityError

from services.recipients import boundary, import_validate, settings
from services.recipients.import_validate import Checked
from services.recipients.metrics import CONTACTS_IMPORTED
from services.recipients.store import Store
from services.recipients.store_import import (
    MAX_ERRORS,
    Batch,
    BatchWriter,
    Counts,
    Progress,
    categories_by_name,
    load_progress,
    save_progress,
)
from shared import auth, idempotency, validate
from shared.errors import HeraldError, invalid

log = logging.getLogger("herald.recipients.import")

MAX_IMPORT_CATEGORIES = 1000
CHUNK = 1000  # rows validated per task (a whole message, when it has at least this many)
_MISMATCH = "was already used for another import (other options or other rows); use a new request_id"


_Chunk = tuple["asyncio.Future[list[Checked]]", int, str]  # validation, position, digest after it


class ImportRpcs:
    store: Store

    async def ImportContacts(self, request_iterator: AsyncIterator[pb.ImportContactsRequest],
                             context: grpc.aio.ServicerContext) -> pb.ImportContactsResponse:
        p = boundary.principal()
        p.require(*boundary.WRITERS)
        stream = request_iterator.__aiter__()
        first = await anext(stream, None)
        opts = first.options if first is not None else pb.ImportContactsOptions()
        rid = opts.request_id
        boundary.require({
            "options.request_id": boundary.text(rid, validate.MAX_REQUEST_ID),
            "options.on_conflict": validate.enum_value(pb.ImportConflictPolicy, opts.on_conflict),
            "options.categories": (f"at most {MAX_IMPORT_CATEGORIES}"
                                   if len(opts.categories) > MAX_IMPORT_CATEGORIES else None)})
        fp = idempotency.fingerprint("ImportContacts", opts)
        prior = await load_progress(self.store.engine, p.workspace, rid) if rid else None
        if prior is not None and prior.fingerprint and prior.fingerprint != fp:
            raise invalid({"options.request_id": f"{rid!r} {_MISMATCH}"})
        state = Progress(fingerprint=fp) if prior is None else prior
        extra = await self._import_categories(p.workspace, opts, rid, state)
        if rid and prior is None and state.response.created_category_ids:
            prior = state  # recorded with the categories it created

        job = _Import(self.store, p, rid, opts.on_conflict, extra, prior, state)
        resp = await job.run(first, stream, context)
        if job.wrote:
            for result, n in (("created", job.counts.created), ("updated", job.counts.updated),
                              ("unchanged", job.counts.unchanged),
                              ("rejected", job.counts.rejected)):
                if n:
                    CONTACTS_IMPORTED.labels(result).inc(n)
            log.info("contacts imported", extra={
                "workspace": p.workspace, "n_rows": resp.rows, "n_created": resp.created,
                "n_updated": resp.updated, "n_unchanged": resp.unchanged,
                "n_rejected": resp.rejected})
        return resp

    async def _import_categories(self, ws: str, opts: pb.ImportContactsOptions, rid: str,
                                 state: Progress) -> list[str]:
        """Category ids of options.categories (ids first, then names), creating missing names
        when asked (recorded under request_id in the same transaction)."""
        wanted = list(dict.fromkeys(x.strip() for x in opts.categories))
        by_id = await self.store.existing_categories(ws, [x for x in wanted
                                                          if validate.uuid_text(x) is None])
        by_name = await categories_by_name(self.store.engine, ws,
                                           [x for x in wanted if x not in by_id])
        missing = [x for x in wanted if x not in by_id and x not in by_name]
        bad: dict[str, str | None] = {}
        for i, raw in enumerate(opts.categories):
            name = raw.strip()
            if name not in missing:
                continue
            if not opts.create_missing_categories:
                bad[f"options.categories[{i}]"] = (f"no category {name[:100]!r} in the workspace "
                                                   "(or set create_missing_categories)")
            else:
                bad[f"options.categories[{i}]"] = (boundary.text(name, boundary.MAX_TEXT)
                                                   if name else "a category name is required")
        boundary.require(bad)
        if missing:
            try:
                async with self.store.write() as conn:
                    for name in missing:
                        rec = await self.store.create_category(conn, ws, name)
                        by_name[name] = rec["id"]
                        state.response.created_category_ids.append(rec["id"])
                    if rid:
                        await save_progress(conn, ws, rid, None, state, self.store.clock.now())
            except IntegrityError as exc:
                raise HeraldError(grpc.StatusCode.ABORTED, "concurrent change, retry") from exc
        return list(dict.fromkeys(x if x in by_id else by_name[x] for x in wanted))


class _Import:
    """One stream: reading, validation (in worker processes, a few chunks at once) and
    writing overlap, with bounded queues between them, so at most about two batches and a
    few chunks are held at once whatever the stream's length."""

    def __init__(self, store: Store, p: auth.Principal, rid: str, policy: int, extra: list[str],
                 prior: Progress | None, state: Progress) -> None:
        self.store = store
        self.p = p
        self.rid = rid
        self.prior = prior  # the record as last committed (None: none yet)
        self.state = state
        self.writer = BatchWriter(p.workspace, policy, extra)
        self.counts = Counts()
        self.wrote = 0
        self.hasher = hashlib.sha256() if rid else None

    async def run(self, first: pb.ImportContactsRequest | None,
                  stream: AsyncIterator[pb.ImportContactsRequest],
                  context: grpc.aio.ServicerContext) -> pb.ImportContactsResponse:
        """Three stages, each a task: read (and submit chunks for validation), collect the
        validated chunks in order into batches, write the batches. Bounded queues between
        them: a slow database slows the reading of the stream."""
        skip = self.prior.position if self.prior else 0
        chunks: asyncio.Queue[_Chunk | None] = asyncio.Queue(maxsize=import_validate.worker_count() + 1)
        batches: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=1)
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self._read_all(first, stream, skip, chunks)),
                 loop.create_task(self._collect(chunks, batches)),
                 loop.create_task(self._write_all(batches))]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            while not chunks.empty():
                if (item := chunks.get_nowait()) is not None:
                    item[0].cancel()
        # A client that cancels (or whose connection breaks) also ends the request stream as
        # if it had sent its last row: gRPC gives both as the end of the stream. Recorded as
        # done, such an import would refuse the client's retry with the rest of its rows; so
        # a cancelled call keeps only what it committed, and the retry continues after it.
        if context.cancelled():
            raise asyncio.CancelledError("the client cancelled the import")
        if self.rid and not self.state.done:
            await self._commit(None, Counts(), done=True)
        return self.state.response

    async def _read_all(self, first: pb.ImportContactsRequest | None,
                        stream: AsyncIterator[pb.ImportContactsRequest], skip: int,
                        chunks: asyncio.Queue[_Chunk | None]) -> None:
        """Reads the stream into chunks of at least CHUNK rows, each submitted for validation
        as soon as it is complete."""
        chunk = min(max(1, settings.IMPORT_BATCH.get_int()), CHUNK)
        region, pii = settings.DEFAULT_REGION.get(), self.p.pii
        part = pb.ImportContactsRequest()
        position = 0
        hasher = self.hasher

        async def submit(data: bytes) -> None:
            digest = hasher.hexdigest() if hasher is not None else ""
            await chunks.put((asyncio.ensure_future(import_validate.validate(data, region, pii)),
                              position, digest))

        msg = first
        while msg is not None:
            if msg is not first and msg.HasField("options"):
                raise invalid({"options": "options go in the first message of the stream only"})
            lines = msg.lines
            n = len(msg.contacts)
            if lines and len(lines) != n:
                raise invalid({"lines": f"{len(lines)} line numbers for {n} contacts "
                                        "(one per contact, or none)"})
            if hasher is not None:
                for i, ct in enumerate(msg.contacts):
                    hasher.update((lines[i] if lines else position + i + 1).to_bytes(
                        8, "big", signed=True))
                    hasher.update(ct.SerializeToString(deterministic=True))
                    if position + i + 1 == skip:
                        self._verify(hasher.hexdigest())
            if position + n > skip and self.state.done:  # more rows than the import had
                raise invalid({"options.request_id": f"{self.rid!r} {_MISMATCH}"})
            if position >= skip and not part.contacts and n >= chunk:
                # A whole message becomes one chunk as it is (the usual case).
                if not lines:
                    msg.lines.extend(range(position + 1, position + n + 1))
                msg.ClearField("options")
                position += n
                await submit(msg.SerializeToString())
            else:
                for i, ct in enumerate(msg.contacts):
                    position += 1
                    if position <= skip:
                        continue
                    part.contacts.append(ct)
                    part.lines.append(lines[i] if lines else position)
                    if len(part.contacts) >= chunk:
                        await submit(part.SerializeToString())
                        part = pb.ImportContactsRequest()
            msg = await anext(stream, None)
        if position < skip:
            raise invalid({"options.request_id": f"{self.rid!r} {_MISMATCH}"})
        if part.contacts:
            await submit(part.SerializeToString())
        await chunks.put(None)

    async def _collect(self, chunks: asyncio.Queue[_Chunk | None],
                       batches: asyncio.Queue[Batch | None]) -> None:
        """Validated chunks, in stream order, into batches of at least
        HERALD_RECIPIENTS_IMPORT_BATCH rows (the last one smaller)."""
        size = max(1, settings.IMPORT_BATCH.get_int())
        rows: list[Checked] = []
        last: tuple[int, str] | None = None
        while (item := await chunks.get()) is not None:
            fut, position, digest = item
            rows.extend(await fut)
            last = (position, digest)
            if len(rows) >= size:
                await batches.put(Batch(rows, position, digest))
                rows = []
        if rows and last is not None:
            await batches.put(Batch(rows, *last))
        await batches.put(None)

    def _verify(self, digest: str) -> None:
        if self.prior is not None and self.prior.digest != digest:
            raise invalid({"options.request_id": f"{self.rid!r} {_MISMATCH}"})

    async def _write_all(self, queue: asyncio.Queue[Batch | None]) -> None:
        # Fresh planner statistics while the table grows: with those of an empty table,
        # PostgreSQL scanned contacts for every lookup (a 1,000,000-row import slowed to
        # ~2,000 rows/s). They are refreshed each time the import has written as many rows
        # as before the last refresh, and at its end (5k, 10k, 20k, ... rows: 9 times for
        # 1,000,000), not after every batch: an ANALYZE cost PostgreSQL ~0.3 s of CPU at
        # 100k contacts, ~30 µs a row when run for each 5,000-row batch.
        analysed = unanalysed = 0
        while (batch := await queue.get()) is not None:
            for attempt in (1, 2):
                try:
                    async with self.store.write() as conn:
                        counts = await self.writer.write(conn, batch, self.store.clock.now())
                        await self._commit(batch, counts, done=False, conn=conn)
                    break
                except IntegrityError as exc:
                    # Another writer created one of these contacts meanwhile: match again.
                    if attempt == 2:
                        raise HeraldError(grpc.StatusCode.ABORTED,
                                          "concurrent change, retry") from exc
            self.wrote += counts.created + counts.updated
            unanalysed += counts.created + counts.updated
            if unanalysed and unanalysed >= analysed:
                self.store.note_imported(unanalysed)
                analysed, unanalysed = analysed + unanalysed, 0
        if unanalysed:
            self.store.note_imported(unanalysed)

    async def _commit(self, batch: Batch | None, counts: Counts, done: bool,
                      conn: Any = None) -> None:
        """Adds a batch's counts to the answer and, under a request_id, records the progress
        in the batch's own transaction."""
        resp = pb.ImportContactsResponse()
        resp.CopyFrom(self.state.response)
        resp.rows += counts.created + counts.updated + counts.unchanged + counts.rejected
        resp.created += counts.created
        resp.updated += counts.updated
        resp.unchanged += counts.unchanged
        resp.rejected += counts.rejected
        room = MAX_ERRORS - len(resp.errors)
        for line, name, why in counts.errors[:max(0, room)]:
            resp.errors.add(line=line, field=name, description=why)
        new = Progress(batch.position if batch else self.state.position,
                       batch.digest if batch else self.state.digest, done, resp,
                       self.state.fingerprint)
        if self.rid:
            if conn is None:
                async with self.store.write() as own:
                    await save_progress(own, self.p.workspace, self.rid, self.prior, new,
                                        self.store.clock.now())
            else:
                await save_progress(conn, self.p.workspace, self.rid, self.prior, new,
                                    self.store.clock.now())
            self.prior = new
        self.state = new
        for attr in ("created", "updated", "unchanged", "rejected"):
            setattr(self.counts, attr, getattr(self.counts, attr) + getattr(counts, attr))
