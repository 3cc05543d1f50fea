"""import: contacts into a category through the API, rows/s, on each database: the
client-streaming import RPC of RecipientService when the API has one, else UpsertContacts
batches (--import-batch contacts each, --import-concurrency calls in flight). CPU per row
of the recipients process and of the database's backends; the recipients process's peak
memory.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bench import herald_stack as hs
from bench.measure import Watch, row


async def _one(running: hs.Running, n: int, args: argparse.Namespace) -> dict[str, Any]:
    cl = running.clients()
    try:
        pids = {k: v for k, v in running.pids().items() if k in ("recipients", "nats", "redis")}
        watch = Watch(pids, running.pg_names).start()
        _cat, took, how = await hs.import_contacts(cl, n, args.import_batch, args.import_concurrency)
        use = watch.stop().group("pg:", "postgres backends")
    finally:
        await cl.close()
    return row(f"import {running.db}: {n:,} contacts into a category", round(n / took), "rows/s",
               f"{took:.1f} s; {how}; {use.cpu_per(n).replace('msg', 'row')}; recipients peak RSS "
               f"{use.peak_kb.get('recipients', 0) / 1024:.0f} MiB", use.load())


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = []
    for db in [d.strip() for d in args.import_db.split(",") if d.strip()]:
        with hs.herald(db) as running:
            out.append(asyncio.run(_one(running, args.import_size, args)))
    return out


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--import-size", type=int, default=100000, help="import: contacts imported")
    ap.add_argument("--import-db", default="sqlite,postgres", help="import: databases (sqlite, postgres)")
