"""email: one email gateway process against a local SMTP sink, and its tracking endpoint.

1. --email-jobs jobs (a realistic ~8 KB HTML newsletter with a dozen links, text part,
   personalised fields) pre-loaded on JetStream; the gateway is started afterwards and
   the time from its ready line until the consumer is drained gives emails/s. The sink
   is a minimal PIPELINING SMTP responder in its own process (aiosmtpd plus .eml files
   is measured too, as a second figure: it, not the gateway, is then the limit).
   Repeated with an RSA-2048 DKIM key when --email-dkim.
2. Tracking: wrk (`apt-get install wrk`; skipped when absent) in a separate process for
   --email-track-seconds against the open pixel and the click redirect; requests/s, p99
   latency, gateway CPU per request.
3. Where the time goes: per-stage CPU cost measured in this process (compose, DKIM,
   SMTP transaction, Redis claim+record, event publish).

This module runs the parts in order; each part lives in a bench/email_*.py module.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

from bench.email_jobs import job as job  # the bench's newsletter job, also used by tests
from bench.email_keys import rsa_pem
from bench.email_sending import aiosmtpd_rows, dkim_rows, plain_rows
from bench.email_sink import start_fast_sink
from bench.email_stages import stages
from bench.email_tracking import tracking_rows
from cli import procs


def run(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    parts = args.email_parts
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        nats = procs.start_nats(work / "nats")
        redis = procs.start_redis(work / "redis")
        sink, port = start_fast_sink(work)
        try:
            nats_url, redis_url = str(nats.info["url"]), str(redis.info["url"])
            if "send" in parts:
                rows += plain_rows(args, work, nats_url, redis_url, port)
            key_pem = rsa_pem()
            if args.email_dkim and "send" in parts:
                rows += dkim_rows(args, work, nats_url, redis_url, port, key_pem)
            if args.email_aiosmtpd and "send" in parts:
                rows += aiosmtpd_rows(args, work, nats_url, redis_url)
            if "track" in parts:
                rows += tracking_rows(args, work, nats_url, redis_url, port)
            if "stages" in parts:
                rows += asyncio.run(stages(nats_url, redis_url, port, key_pem))
        finally:
            sink.kill()
            sink.wait()
            redis.stop()
            nats.stop()
    rows.append(("machine", f"{len(os.sched_getaffinity(0))} cores",
                 "gateway, sink, nats-server, redis and the load generator share them"))
    return rows


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--email-jobs", type=int, default=20000, help="email: jobs pre-loaded")
    ap.add_argument("--email-pool", type=int, default=16, help="email: SMTP connections")
    ap.add_argument("--email-dkim", action=argparse.BooleanOptionalAction, default=True,
                    help="email: also measure with DKIM (RSA-2048, Ed25519)")
    ap.add_argument("--email-aiosmtpd", action=argparse.BooleanOptionalAction, default=True,
                    help="email: also measure against the aiosmtpd dev sink")
    ap.add_argument("--email-repeat", type=int, default=3,
                    help="email: runs of the plain send and of each tracking route (median reported)")
    ap.add_argument("--email-consumer", choices=["jsfast", "nats", "both"], default="jsfast",
                    help="email: JetStream consumer of the gateway (both: alternating runs)")
    ap.add_argument("--email-track-seconds", type=int, default=8, help="email: wrk duration")
    ap.add_argument("--email-track-conns", type=int, default=64, help="email: wrk connections")
    ap.add_argument("--email-parts", type=lambda v: set(v.split(",")), default={"send", "track", "stages"},
                    help="email: comma-separated parts to run: send,track,stages (default all)")
    ap.add_argument("--email-profile", action="store_true",
                    help="email: py-spy one send run and one run per tracking route (summary "
                         "rows; raw stacks of the send run kept in bench/results)")
    ap.add_argument("--email-ab-tree", default="",
                    help="email: another checkout (e.g. `git worktree add /tmp/base HEAD~1`) whose "
                         "gateway runs alternately with this tree's, same machine conditions")
