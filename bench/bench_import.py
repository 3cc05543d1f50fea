"""import: contacts into a category through the API, rows/s, on each database, by two paths
measured alternately on the same stack: RecipientService.ImportContacts (one client stream
for the whole file: options first, then --import-chunk contacts a message with their line
numbers, the category in the options) and UpsertContacts batches (--import-batch contacts
each, --import-concurrency calls in flight, the category on every contact). CPU per row of
the recipients process and of the database's backends; the recipients process's peak memory.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from herald.v1 import recipients_pb2 as rpb

from bench import herald_stack as hs
from bench.measure import Watch, row

PATHS = ("stream", "upsert")


def _contact(i: int, tag: str) -> rpb.Contact:
    return rpb.Contact(phone=hs.phone(i), first_name=f"Bench{i}", external_id=f"{tag}-{i}")


async def _stream(cl: Any, n: int, first: int, chunk: int, cat: str, tag: str) -> str:
    async def requests() -> AsyncIterator[rpb.ImportContactsRequest]:
        yield rpb.ImportContactsRequest(options=rpb.ImportContactsOptions(
            request_id=f"bench-{tag}", categories=[cat]))
        for k in range(0, n, chunk):
            stop = min(n, k + chunk)
            yield rpb.ImportContactsRequest(contacts=[_contact(first + i, tag) for i in range(k, stop)],
                                            lines=range(k + 2, stop + 2))

    resp = await cl.recipients.ImportContacts(requests(), metadata=hs.MD, timeout=3600)
    if resp.rejected or resp.created != n:
        raise RuntimeError(f"import: {resp.created} created, {resp.rejected} rejected: {resp.errors[:3]}")
    return f"ImportContacts, one stream, {chunk:,} contacts a message"


async def _upsert(cl: Any, n: int, first: int, batch: int, concurrency: int, cat: str, tag: str) -> str:
    sem = asyncio.Semaphore(concurrency)

    async def one(k: int) -> None:
        async with sem:
            contacts = [_contact(first + i, tag) for i in range(k, min(n, k + batch))]
            for ct in contacts:
                ct.category_ids.append(cat)
            resp = await cl.recipients.UpsertContacts(rpb.UpsertContactsRequest(
                request_id=f"bench-{tag}-{k}", contacts=contacts), metadata=hs.MD, timeout=600)
            if resp.rejected:
                raise RuntimeError(f"contacts rejected: {[r.error for r in resp.results if r.error][:3]}")

    await asyncio.gather(*(one(k) for k in range(0, n, batch)))
    return f"UpsertContacts, batches of {batch:,}, {concurrency} in flight"


async def _one(running: hs.Running, path: str, n: int, first: int, args: argparse.Namespace) -> dict[str, Any]:
    cl = running.clients()
    tag = uuid.uuid4().hex[:8]
    try:
        cat = await cl.recipients.CreateCategory(rpb.CreateCategoryRequest(name=f"bench-{tag}"),
                                                 metadata=hs.MD)
        if path == "stream":  # starts the service's validation workers before the watch
            await cl.recipients.ImportContacts(iter([rpb.ImportContactsRequest(
                contacts=[rpb.Contact(external_id=f"{tag}-warm-up")])]), metadata=hs.MD, timeout=60)
        pids = {k: v for k, v in running.pids().items() if k in ("recipients", "nats", "redis")}
        pids.update({f"workers:{p}": p for p in _children(pids["recipients"])})
        watch = Watch(pids, running.pg_names).start()
        t0 = time.perf_counter()
        if path == "stream":
            how = await _stream(cl, n, first, args.import_chunk, cat.id, tag)
        else:
            how = await _upsert(cl, n, first, args.import_batch, args.import_concurrency, cat.id, tag)
        took = time.perf_counter() - t0
        use = watch.stop().group("pg:", "postgres backends").group("workers:", "recipients' import workers")
    finally:
        await cl.close()
    return row(f"import {running.db} ({path}): {n:,} new contacts into a category", round(n / took),
               "rows/s", f"{took:.1f} s; {how}; {use.cpu_per(n).replace('msg', 'row')}; recipients peak "
               f"RSS {use.peak_kb.get('recipients', 0) / 1024:.0f} MiB", use.load())


def _children(pid: int) -> list[int]:
    """Processes the recipients service started (ImportContacts' validation workers)."""
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = []
    paths = [p.strip() for p in args.import_paths.split(",") if p.strip()]
    if unknown := set(paths) - set(PATHS):
        raise ValueError(f"unknown import paths {sorted(unknown)} ({', '.join(PATHS)})")
    n = args.import_size
    for db in [d.strip() for d in args.import_db.split(",") if d.strip()]:
        # Alternate the paths (stream, upsert, stream, ...) so both see the same load; each
        # run on a fresh stack (empty tables, the same bench numbers free again).
        for path in [p for _ in range(args.import_repeat) for p in paths]:
            with hs.herald(db) as running:
                out.append(asyncio.run(_one(running, path, n, 0, args)))
    return out


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--import-size", type=int, default=100000, help="import: contacts imported per run")
    ap.add_argument("--import-db", default="sqlite,postgres", help="import: databases (sqlite, postgres)")
    ap.add_argument("--import-paths", default=",".join(PATHS),
                    help="import: paths measured alternately (stream = ImportContacts, upsert = UpsertContacts)")
    ap.add_argument("--import-repeat", type=int, default=1, help="import: runs of each path")
    ap.add_argument("--import-chunk", type=int, default=2000, help="import: contacts per ImportContacts message")
