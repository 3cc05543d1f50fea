"""python -m gateways.email: the email gateway process.

Consumes jobs.email (durable pull consumer "email", shared by every replica), submits
over SMTP and serves the tracking HTTP endpoints. Ready line (HERALD_READY_FILE):
{"service": "email-gateway", "grpc_port", "metrics_port", "tracking_port", "tracking_url"}.
"""

from __future__ import annotations

import asyncio
import contextlib

from gateways.email import dedup, links, render, settings, tokens
from gateways.email.smtp_pool import SmtpConfig, SmtpPool
from gateways.email.tracking import TrackingServer
from gateways.email.worker import EmailWorker, WorkerConfig
from shared import bus, cache
from shared import log as shared_log
from shared.grpc_server import ServiceRuntime

NAME = "email-gateway"
DURABLE = "email"
DRAIN_TIMEOUT = 30.0


async def main() -> None:
    log = shared_log.setup(NAME)
    rt = ServiceRuntime(NAME)
    rt.install_signal_handlers()
    rt.start_metrics()
    await rt.start_grpc([])

    signer = tokens.Signer(tokens.parse_keys(settings.TRACKING_KEYS.get()))
    if settings.DEV_TRACKING_KEY.encode() in signer.keys:
        log.warning("HERALD_TRACKING_KEYS holds the public development key: tracking links "
                    "can be forged; set a secret key in production")

    nc = await bus.connect(name=NAME)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    redis = cache.connect()

    tracking = TrackingServer(js, signer, settings.TRACKING_TRUST_FORWARDED.get_bool())
    tracking_port = await tracking.start(settings.TRACKING_ADDR.get())
    base_url = settings.TRACKING_BASE_URL.get() or f"http://{tracking.host}:{tracking_port}"

    smtp_timeout = settings.SMTP_TIMEOUT.get_float()
    pool_size = settings.SMTP_POOL_SIZE.get_int()
    pool = SmtpPool(SmtpConfig(
        host=settings.SMTP_HOST.get(), port=settings.SMTP_PORT.get_int(), timeout=smtp_timeout,
        username=settings.SMTP_USERNAME.get(), password=settings.SMTP_PASSWORD.get(),
        starttls=settings.SMTP_STARTTLS.get(), helo=settings.SMTP_HELO.get(),
    ), pool_size)
    worker = EmailWorker(
        js, dedup.SendMarkers(redis, settings.DEDUP_TTL.get_int()), pool, render.Renderer(),
        links.Tracker(signer, base_url),
        WorkerConfig(
            max_attempts=settings.SMTP_MAX_ATTEMPTS.get_int(),
            retry_base=settings.SMTP_RETRY_BASE.get_float(),
            retry_max=settings.SMTP_RETRY_MAX.get_float(),
            unsubscribe_mailto=settings.UNSUBSCRIBE_MAILTO.get(),
            lease=5 * smtp_timeout,
        ),
    )

    stop = asyncio.Event()
    # A batch a few times the pool keeps every connection busy without holding jobs
    # (and their ack_wait clocks) while they queue for a connection. Capped: every job in
    # flight holds a Redis connection at times and redis-py's pool refuses the 101st.
    consumer = asyncio.create_task(bus.pull_loop(
        js, stream=bus.JOBS_STREAM, durable=DURABLE, subject=bus.SUBJECT_EMAIL_JOBS,
        handler=worker.handle, stop=stop, concurrent=True, batch=min(max(4 * pool_size, 8), 64),
    ))
    rt.write_ready(tracking_port=tracking_port, tracking_url=base_url)

    waiter = asyncio.create_task(rt.wait())
    done, _ = await asyncio.wait({waiter, consumer}, return_when=asyncio.FIRST_COMPLETED)
    if consumer in done and consumer.exception() is not None:
        log.error("job consumer stopped", exc_info=consumer.exception())
    log.info("shutting down")
    stop.set()
    waiter.cancel()
    # Let in-flight SMTP transactions finish: an interrupted one leaves its outcome unknown.
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.wait_for(consumer, DRAIN_TIMEOUT)
    await tracking.stop()
    await pool.close()
    with contextlib.suppress(Exception):
        await nc.drain()
    await redis.aclose()
    await rt.shutdown()
    if consumer.done() and not consumer.cancelled() and consumer.exception() is not None:
        raise SystemExit(1)


if __name__ == "__main__":
    asyncio.run(main())
