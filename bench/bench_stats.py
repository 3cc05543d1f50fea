"""stats: the stats aggregator (services.stats) applying message events, in a whole local stack.

1. Backlog: with the stats process stopped, --stats-events message events (SUBMITTED then
   DELIVERED for --stats-events/2 messages of one campaign) are published on
   events.message.*; the process is started again and the clock runs from its ready line
   until GetCampaignStats shows every message DELIVERED. Events/s, and the CPU per event of
   the stats process and of redis-server, apart and together.
2. Lag: DELIVERED events of new messages published at a steady --stats-rate for
   --stats-seconds while GetCampaignStats is polled every 20 ms; each event's lag is the
   time from its publish (acknowledged by JetStream) to the first answer that counts it.
   p50/p99 (the poll interval is part of it).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from herald.v1 import stats_pb2 as spb

from bench import herald_stack as hs
from bench.measure import Watch, percentile, row
from shared import bus, states

WORKSPACE = hs.MD[0][1]


def event(campaign: str, message: str, kind: int) -> tuple[str, e.MessageEvent, str]:
    ts = Timestamp()
    ts.GetCurrentTime()
    ev = e.MessageEvent(event_id=str(uuid.uuid4()), kind=kind, message_id=message, campaign_id=campaign,
                        workspace_id=WORKSPACE, channel=c.CHANNEL_SMS, status=states.KIND_STATUS[kind],
                        occurred_at=ts, to="+447700900123", attempt=1, carrier_result="DELIVRD"
                        if kind == e.MESSAGE_EVENT_KIND_DELIVERED else "")
    return states.message_subject(kind), ev, ev.event_id


async def publish_backlog(nats_url: str, campaign: str, n_events: int) -> None:
    nc = await bus.connect(nats_url, name="bench-stats")
    js = nc.jetstream()
    msgs = [str(uuid.uuid4()) for _ in range(n_events // 2)]
    for kind in (e.MESSAGE_EVENT_KIND_SUBMITTED, e.MESSAGE_EVENT_KIND_DELIVERED):
        for k in range(0, len(msgs), 5000):
            await bus.publish_many(js, [event(campaign, m, kind) for m in msgs[k:k + 5000]], concurrency=512)
    await nc.close()


async def wait_delivered(cl: Any, campaign: str, n: int, timeout: float) -> spb.CampaignStats:
    deadline = time.perf_counter() + timeout
    while True:
        try:
            st = await cl.stats.GetCampaignStats(spb.GetCampaignStatsRequest(campaign_id=campaign), metadata=hs.MD)
            if st.delivered >= n:
                return st
        except Exception:  # NOT_FOUND until the first event of the campaign is applied
            st = None
        if time.perf_counter() > deadline:
            raise TimeoutError(f"stats: {st.delivered if st else 0}/{n} delivered after {timeout:.0f} s")
        await asyncio.sleep(0.02)


def backlog(running: hs.Running, n_events: int) -> list[dict[str, Any]]:
    stack = running.stack
    campaign = str(uuid.uuid4())
    stack.stop_one("stats")
    asyncio.run(publish_backlog(stack.procs["nats"].info["url"], campaign, n_events))
    stack.start_one("stats")
    watch = Watch({"stats": stack.procs["stats"].popen.pid, "redis": stack.procs["redis"].popen.pid,
                   "nats": stack.procs["nats"].popen.pid}).start()

    async def go() -> spb.CampaignStats:
        cl = running.clients()
        try:
            return await wait_delivered(cl, campaign, n_events // 2, max(120.0, n_events / 200))
        finally:
            await cl.close()

    st = asyncio.run(go())
    use = watch.stop()
    rate = n_events / use.wall
    # The whole cost of applying an event: the stats process and the Redis work it causes.
    both = use.cpu["stats"] + use.cpu["redis"]
    return [
        row(f"stats: backlog of {n_events:,} message events applied", round(rate), "events/s",
            f"{use.wall:.2f} s from the stats process's ready line to GetCampaignStats showing all "
            f"{st.delivered:,} DELIVERED; stats process {n_events / max(use.cpu['stats'], 1e-9):,.0f} events "
            f"per CPU second; {use.cpu_per(n_events).replace('msg', 'event')}", use.load()),
        row(f"stats: backlog of {n_events:,} message events, stats + redis CPU per event",
            round(1000 * both / n_events, 4), "ms",
            f"stats process and redis-server together: {n_events / max(both, 1e-9):,.0f} events per "
            "CPU second", use.load()),
    ]


async def steady(running: hs.Running, rate: int, seconds: float) -> tuple[list[float], Any]:
    stack = running.stack
    campaign = str(uuid.uuid4())
    nc = await bus.connect(stack.procs["nats"].info["url"], name="bench-stats-lag")
    js = nc.jetstream()
    cl = running.clients()
    published: list[float] = []  # publish-ack time of the i-th event
    seen: list[tuple[float, int]] = []  # (poll answer time, delivered)
    total = int(rate * seconds)
    done = asyncio.Event()

    async def publisher() -> None:
        tick = 0.01
        per_tick = max(1, round(rate * tick))
        t0 = time.perf_counter()
        sent = 0
        while sent < total:
            batch = [event(campaign, str(uuid.uuid4()), e.MESSAGE_EVENT_KIND_DELIVERED)
                     for _ in range(min(per_tick, total - sent))]
            await bus.publish_many(js, batch, concurrency=len(batch))
            now = time.perf_counter()
            published.extend([now] * len(batch))  # all of a batch count from its last ack
            sent += len(batch)
            await asyncio.sleep(max(0.0, t0 + (sent / rate) - time.perf_counter()))

    async def poller() -> None:
        while not done.is_set():
            try:
                st = await cl.stats.GetCampaignStats(spb.GetCampaignStatsRequest(campaign_id=campaign),
                                                     metadata=hs.MD)
                seen.append((time.perf_counter(), st.delivered))
                if st.delivered >= total:
                    done.set()
            except Exception:
                pass
            await asyncio.sleep(0.02)

    watch = Watch({"stats": stack.procs["stats"].popen.pid, "redis": stack.procs["redis"].popen.pid}).start()
    try:
        poll = asyncio.create_task(poller())
        await publisher()
        await asyncio.wait_for(done.wait(), 60)
        await poll
    finally:
        await cl.close()
        await nc.close()
    use = watch.stop()
    lags = []
    j = 0
    for i, t_pub in enumerate(published):
        while j < len(seen) and seen[j][1] < i + 1:
            j += 1
        if j < len(seen):
            lags.append(max(0.0, seen[j][0] - t_pub))
    return lags, use


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    with hs.herald("sqlite") as running:
        out = backlog(running, args.stats_events)
        lags, use = asyncio.run(steady(running, args.stats_rate, args.stats_seconds))
    out.append(row(f"stats: lag publish -> visible in GetCampaignStats at {args.stats_rate:,} events/s, p99",
                   round(1000 * percentile(lags, 99), 1), "ms",
                   f"p50 {1000 * percentile(lags, 50):.1f} ms, max {1000 * max(lags):.1f} ms over {len(lags):,} events "
                   f"in {args.stats_seconds:.0f} s (polled every 20 ms); {use.cpu_per(len(lags)).replace('msg', 'event')} "
                   "(stats includes answering the polls)",
                   use.load()))
    return out


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--stats-events", type=int, default=100000, help="stats: backlog of message events")
    ap.add_argument("--stats-rate", type=int, default=1000, help="stats: steady events/s for the lag")
    ap.add_argument("--stats-seconds", type=float, default=10.0, help="stats: seconds of steady publishing")
