"""reads: the campaign views at scale, on PostgreSQL (or --reads-db sqlite), over a campaign of
--reads-size messages (the ledger is filled by a real campaign: contacts imported, approved,
all DELIVERED).

1. ListMessages with a filter (status=DELIVERED), pages of 100 at --reads-requests random
   positions. The positions' page tokens are collected first by walking the list with
   pages of 1,000 (that walk is timed too); p50/p99 latency.
2. The tab counts: the ledger's counters of the campaign (GetCampaign's progress, or a
   counting RPC of CampaignService when it has one), p50/p99.
3. An export of every row (CreateExport CSV -> DONE, then DownloadExport): rows/s, and the
   campaigns process's peak resident memory (VmRSS sampled every 50 ms) while it ran.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any

from herald.v1 import campaigns_pb2 as cpb

from bench import herald_stack as hs
from bench.measure import Watch, percentile, row, status_kb

FILTER = "status=DELIVERED"


def _count_rpc() -> str:
    """A CampaignService RPC that answers message counts (the tabs), when the API has one."""
    svc = cpb.DESCRIPTOR.services_by_name["CampaignService"]
    for m in svc.methods:
        if "Count" in m.name and not m.server_streaming and "campaign_id" in m.input_type.fields_by_name:
            return m.name
    return ""


def _lat(values: list[float]) -> str:
    return f"p50 {1000 * percentile(values, 50):.1f} ms, p99 {1000 * percentile(values, 99):.1f} ms"


async def reads(running: hs.Running, n: int, requests: int) -> list[dict[str, Any]]:
    db = "PostgreSQL" if running.db == "postgres" else "SQLite"
    cl = running.clients()
    md = hs.MD
    out = []
    try:
        cat, took, how = await hs.import_contacts(cl, n)
        cid = await hs.sms_campaign(cl, cat, f"bench reads {n}")
        cr = await hs.approve_and_follow(cl, cid, n)
        out.append(row(f"reads: ledger filled ({n:,} messages, {db})", round(n / cr.seconds), "msg/s",
                       f"import {took:.1f} s ({how}); campaign approve -> all DELIVERED {cr.seconds:.1f} s"))

        # 1. page tokens by a walk with pages of 1,000, then random pages of 100
        watch = Watch(running.pids(), running.pg_names).start()
        tokens, walk, token = [""], [], ""
        while True:
            t = time.perf_counter()
            page = await cl.campaigns.ListMessages(cpb.ListMessagesRequest(
                campaign_id=cid, page_size=1000, page_token=token, filter=FILTER), metadata=md, timeout=120)
            walk.append(time.perf_counter() - t)
            token = page.next_page_token
            if not token:
                break
            tokens.append(token)
        use = watch.stop().group("pg:", "postgres backends")
        out.append(row(f"reads: ListMessages walk, pages of 1,000, {FILTER}", round(1000 * percentile(walk, 99), 1),
                       "ms p99", f"{len(walk)} pages, {_lat(walk)}, total {sum(walk):.1f} s "
                       f"({n / max(sum(walk), 1e-9):,.0f} rows/s)", use.load()))
        rnd = random.Random(7)
        lat, rows_seen = [], 0
        watch = Watch(running.pids(), running.pg_names).start()
        for _ in range(requests):
            tok = rnd.choice(tokens)
            t = time.perf_counter()
            page = await cl.campaigns.ListMessages(cpb.ListMessagesRequest(
                campaign_id=cid, page_size=100, page_token=tok, filter=FILTER), metadata=md, timeout=60)
            lat.append(time.perf_counter() - t)
            rows_seen += len(page.messages)
        use = watch.stop().group("pg:", "postgres backends")
        out.append(row(f"reads: ListMessages page of 100, {FILTER}, random positions, p99",
                       round(1000 * percentile(lat, 99), 1), "ms",
                       f"{_lat(lat)} over {requests} requests ({rows_seen:,} rows, total_size {page.total_size:,})",
                       use.load()))

        # 2. the tab counts
        rpc = _count_rpc()
        lat = []
        watch = Watch(running.pids(), running.pg_names).start()
        for _ in range(requests):
            t = time.perf_counter()
            if rpc:
                req_cls = getattr(cpb, cpb.DESCRIPTOR.services_by_name["CampaignService"]
                                  .methods_by_name[rpc].input_type.name)
                await getattr(cl.campaigns, rpc)(req_cls(campaign_id=cid), metadata=md, timeout=60)
            else:
                await cl.campaigns.GetCampaign(cpb.GetCampaignRequest(id=cid), metadata=md, timeout=60)
            lat.append(time.perf_counter() - t)
        use = watch.stop().group("pg:", "postgres backends")
        what = f"CampaignService.{rpc}" if rpc else "GetCampaign (its progress: the ledger's counters)"
        out.append(row("reads: tab counts, p99" if db == "PostgreSQL" else f"reads: tab counts ({db}), p99", round(1000 * percentile(lat, 99), 1), "ms",
                       f"{_lat(lat)} over {requests} requests; {what}", use.load()))

        # 3. an export of every row
        camp_pid = running.stack.procs["campaigns"].popen.pid
        rss0 = status_kb(camp_pid, "VmRSS") or 0
        watch = Watch(running.pids(), running.pg_names, interval=0.05, rss_of="campaigns").start()
        t0 = time.perf_counter()
        ex = await cl.campaigns.CreateExport(cpb.CreateExportRequest(
            request_id=f"bench-export-{cid}", campaign_id=cid, format=cpb.EXPORT_FORMAT_CSV), metadata=md)
        deadline = t0 + max(300.0, n / 200)
        while ex.status in (cpb.EXPORT_STATUS_QUEUED, cpb.EXPORT_STATUS_RUNNING):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"export still {cpb.ExportStatus.Name(ex.status)}")
            await asyncio.sleep(0.1)
            ex = await cl.campaigns.GetExport(cpb.GetExportRequest(id=ex.id), metadata=md)
        built = time.perf_counter() - t0
        if ex.status != cpb.EXPORT_STATUS_DONE:
            raise RuntimeError(f"export {cpb.ExportStatus.Name(ex.status)}: {ex.error}")
        size = 0
        async for chunk in cl.campaigns.DownloadExport(cpb.GetExportRequest(id=ex.id), metadata=md, timeout=600):
            size += len(chunk.data)
        total = time.perf_counter() - t0
        use = watch.stop().group("pg:", "postgres backends")
        out.append(row(f"reads: export of all {ex.rows:,} rows (CSV)", round(ex.rows / total), "rows/s",
                       f"built in {built:.1f} s, downloaded ({size / 2**20:.1f} MiB) by {total:.1f} s; campaigns "
                       f"process RSS {rss0 / 1024:.0f} MiB before, peak {watch.rss_peak_kb / 1024:.0f} MiB during",
                       use.load()))
        out.append(row("  reads: campaigns process peak RSS during the export", round(watch.rss_peak_kb / 1024),
                       "MiB", f"VmRSS sampled every 50 ms; {use.cpu_per(max(1, ex.rows)).replace('msg', 'row')}",
                       use.load()))
    finally:
        await cl.close()
    return out


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    with hs.herald(args.reads_db, args.receipt_delay) as running:
        return asyncio.run(reads(running, args.reads_size, args.reads_requests))


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--reads-size", type=int, default=100000, help="reads: messages in the campaign (goal 1000000)")
    ap.add_argument("--reads-db", default="postgres", choices=("postgres", "sqlite"),
                    help="reads: the campaigns database")
    ap.add_argument("--reads-requests", type=int, default=200, help="reads: requests per latency figure")
