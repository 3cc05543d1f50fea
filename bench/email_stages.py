"""Where an email's time goes: per-stage CPU cost measured in the bench's own process
(compose, DKIM, SMTP transaction, Redis claim+record, event publish)."""

from __future__ import annotations

import time

from bench.email_gateway_runs import TRACKING_KEY
from bench.email_jobs import job
from bench.email_keys import ed25519_pem
from shared import bus


async def stages(nats_url: str, redis_url: str, smtp_port: int, key_pem: bytes) -> list[tuple[str, str, str]]:
    from gateways.email import dedup, tokens
    from gateways.email.dkimsign import DkimSigner
    from gateways.email.skeleton import Skeletons
    from gateways.email.smtp_pool import QueuedMail, SmtpConfig, SmtpPool
    from gateways.email.worker import EmailWorker, WorkerConfig
    from shared import cache

    n = 2000
    jobs = [job(i, "c-stages") for i in range(n)]
    signer = tokens.Signer([TRACKING_KEY.encode()])
    rows = []
    pool = SmtpPool(SmtpConfig("127.0.0.1", smtp_port, timeout=10), 8)
    nc = await bus.connect(nats_url)
    js = nc.jetstream()
    redis = cache.connect(redis_url)
    markers = dedup.SendMarkers(redis, 3600)
    w = EmailWorker(js, markers, pool, Skeletons(signer, "https://t.example.com"), WorkerConfig())
    w.compose(jobs[0])
    t = time.process_time()
    composed = [w.compose(j) for j in jobs]
    per = (time.process_time() - t) / n
    rows.append(("  CPU: compose (render, 12 tracked links, MIME)", f"{per * 1e6:,.0f} µs/msg",
                 f"{len(composed[0].data):,} bytes per email"))
    for label, pem in (("RSA-2048", key_pem), ("Ed25519", ed25519_pem())):
        w.dkim = DkimSigner("example.com", "bench", pem)
        w.dkim_by_domain.clear()  # per-From-domain copies of the previous key
        t = time.process_time()
        for j in jobs[:300]:
            w.compose(j)
        rows.append((f"  CPU: compose + DKIM {label}", f"{(time.process_time() - t) / 300 * 1e6:,.0f} µs/msg", ""))
    w.dkim = None
    t = time.process_time()
    wall = time.perf_counter()
    await pool.send_many([QueuedMail(x.mail_from, x.rcpt, x.data) for x in composed])
    rows.append(("  CPU: SMTP transaction (pipelined, 8 connections)",
                 f"{(time.process_time() - t) / n * 1e6:,.0f} µs/msg",
                 f"{n / (time.perf_counter() - wall):,.0f} msg/s alone"))
    await pool.close()
    t = time.process_time()
    for k in range(0, n, 128):
        chunk = jobs[k:k + 128]
        await markers.claim_many([(j.message_id, 1, {"to": j.to}) for j in chunk])
        await markers.set_many([(j.message_id, 1, "submitted", {"p": "x"}) for j in chunk])
    rows.append(("  CPU: Redis claim + record (batches of 128)",
                 f"{(time.process_time() - t) / n * 1e6:,.0f} µs/msg", ""))
    await w.publisher.start()
    from gateways.email import outcomes
    t = time.process_time()
    for k in range(0, n, 128):  # as the worker does: build the events, publish a batch
        evs = []
        for j in jobs[k:k + 128]:
            ev = w.event(j, outcomes.submitted("<x>"), j.message_id)
            evs.append(("events.message.submitted", ev.SerializeToString(), f"stage-{j.message_id}"))
        await w.publisher.publish_many(evs)
    rows.append(("  CPU: outcome event build + publish (batches of 128, one future each)",
                 f"{(time.process_time() - t) / n * 1e6:,.0f} µs/msg", ""))
    await redis.aclose()
    await nc.close()
    return rows
