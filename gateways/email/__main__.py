"""python -m gateways.email: the email gateway process.

Consumes jobs.email (durable pull consumer "email", shared by every replica), submits
over SMTP and serves the tracking HTTP endpoints. Ready line (HERALD_READY_FILE):
{"service": "email-gateway", "grpc_port", "metrics_port", "tracking_port", "tracking_url",
"bounce_port"}.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from gateways.email import dedup, keys, settings, tokens
from gateways.email.bounces import BounceServer
from gateways.email.dkimsign import DkimSigner
from gateways.email.skeleton import Skeletons
from gateways.email.smtp_pool import SmtpConfig, SmtpPool
from gateways.email.tracking import TrackingServer
from gateways.email.worker import EmailWorker, WorkerConfig
from shared import bus, cache, config, production
from shared import log as shared_log
from shared.grpc_server import ServiceRuntime

NAME = "email-gateway"
DRAIN_TIMEOUT = 30.0
# Production mode: no development fallback for any of these.
REQUIREMENTS = [*production.COMMON, *production.REDIS, *production.GRPC_SERVER,
                production.need(settings.TRACKING_KEYS, fallback="a generated development key"),
                production.need(settings.TRACKING_BASE_URL,
                                fallback="links to the gateway's bound address"),
                production.need(settings.SMTP_HOST, fallback="a relay on the loopback interface")]


def load_dkim() -> DkimSigner | None:
    pem = settings.DKIM_PRIVATE_KEY.get().encode()
    path = settings.DKIM_KEY_FILE.get()
    if path:
        with open(path, "rb") as f:
            pem = f.read()
    if not pem.strip():
        return None
    # d= is replaced per From domain unless HERALD_DKIM_DOMAIN fixes it.
    return DkimSigner(settings.DKIM_DOMAIN.get() or "invalid", settings.DKIM_SELECTOR.get(), pem)


def signing_keys(log: logging.Logger) -> list[bytes]:
    """The tracking/VERP keys, or exit 2 with one line naming the setting to fix."""
    try:
        found, source = keys.tracking_keys(settings.TRACKING_KEYS.get(), config.DEV_MODE.get_bool(),
                                           Path(settings.TRACKING_DEV_KEY_FILE.get()))
    except (keys.KeyConfigError, ValueError, OSError) as exc:
        log.error(str(exc))
        raise SystemExit(2) from None
    if source != settings.TRACKING_KEYS.name:
        log.warning("development mode: tracking links are signed with the local random key "
                    "in %s (set HERALD_TRACKING_KEYS in production)", source)
    return found


async def main(signing: list[bytes]) -> None:
    log = shared_log.setup(NAME)
    rt = ServiceRuntime(NAME)
    rt.install_signal_handlers()
    rt.start_metrics()
    await rt.start_grpc([])

    signer = tokens.Signer(signing)

    nc = await bus.connect(name=NAME)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    redis = cache.connect()

    tracking = TrackingServer(js, signer, settings.TRACKING_TRUST_FORWARDED.get_bool(),
                              rate=settings.TRACKING_RATE.get_float(),
                              burst=settings.TRACKING_BURST.get_float(),
                              max_body=settings.TRACKING_MAX_BODY.get_int())
    tracking_port = await tracking.start(settings.TRACKING_ADDR.get())
    base_url = settings.TRACKING_BASE_URL.get() or f"http://{tracking.host}:{tracking_port}"

    smtp_timeout = settings.SMTP_TIMEOUT.get_float()
    pool = SmtpPool(SmtpConfig(
        host=settings.SMTP_HOST.get(), port=settings.SMTP_PORT.get_int(), timeout=smtp_timeout,
        username=settings.SMTP_USERNAME.get(), password=settings.SMTP_PASSWORD.get(),
        starttls=settings.SMTP_STARTTLS.get(), tls=settings.SMTP_TLS.get_bool(),
        verify_tls=settings.SMTP_TLS_VERIFY.get_bool(), helo=settings.SMTP_HELO.get(),
        rate=settings.SMTP_RATE.get_float(),
        max_per_connection=settings.SMTP_MAX_PER_CONNECTION.get_int(),
    ), settings.SMTP_POOL_SIZE.get_int())
    dkim = load_dkim()
    if dkim is not None:
        log.info("DKIM signing on", extra={"selector": dkim.selector, "algorithm": dkim.algorithm})
    # A claim or "written" marker younger than the lease may belong to a live worker that is
    # still waiting for the relay (its SMTP timeout, a few times over).
    lease = 5 * smtp_timeout
    markers = dedup.SendMarkers(redis, settings.DEDUP_TTL.get_int(), lease=lease)
    worker = EmailWorker(
        js, markers, pool,
        Skeletons(signer, base_url, settings.UNSUBSCRIBE_MAILTO.get()),
        WorkerConfig(
            max_attempts=settings.SMTP_MAX_ATTEMPTS.get_int(),
            retry_base=settings.SMTP_RETRY_BASE.get_float(),
            retry_max=settings.SMTP_RETRY_MAX.get_float(),
            unsubscribe_mailto=settings.UNSUBSCRIBE_MAILTO.get(),
            lease=lease,
            verp=settings.VERP.get_bool(),
            verp_domain=settings.VERP_DOMAIN.get(),
            batch=settings.EMAIL_BATCH.get_int(),
            consumer=settings.EMAIL_CONSUMER.get(),
            ack_wait=settings.EMAIL_ACK_WAIT.get_float(),
        ),
        dkim=dkim, dkim_domain=settings.DKIM_DOMAIN.get(),
    )
    bounce_server = None
    bounce_port = 0
    if settings.BOUNCE_ADDR.get():
        bounce_server = BounceServer(js, signer, markers, settings.BOUNCE_MAX_SIZE.get_int())
        bounce_port = await bounce_server.start(settings.BOUNCE_ADDR.get())

    stop = asyncio.Event()
    consumer = asyncio.create_task(worker.run(stop))
    rt.write_ready(tracking_port=tracking_port, tracking_url=base_url, bounce_port=bounce_port)

    waiter = asyncio.create_task(rt.wait())
    done, _ = await asyncio.wait({waiter, consumer}, return_when=asyncio.FIRST_COMPLETED)
    if consumer in done and consumer.exception() is not None:
        exc = consumer.exception()
        log.error("job consumer stopped", exc_info=exc,
                  extra={"reason": f"{type(exc).__name__}: {exc}"})
    log.info("shutting down")
    stop.set()
    waiter.cancel()
    # Let in-flight SMTP transactions finish: an interrupted one leaves its outcome unknown.
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.wait_for(consumer, DRAIN_TIMEOUT)
    await tracking.stop()
    if bounce_server is not None:
        await bounce_server.stop()
    await pool.close()
    with contextlib.suppress(Exception):
        await nc.drain()
    await redis.aclose()
    await rt.shutdown()
    if consumer.done() and not consumer.cancelled() and consumer.exception() is not None:
        raise SystemExit(1)


def run() -> None:
    production.enforce(NAME, REQUIREMENTS)
    # Checked before anything binds or connects: a gateway without a secret key never serves.
    signing = signing_keys(shared_log.setup(NAME))
    if settings.UVLOOP.get_bool():
        try:
            import uvloop
        except ImportError:
            uvloop = None  # type: ignore[assignment]
        if uvloop is not None:
            uvloop.run(main(signing))
            return
    asyncio.run(main(signing))


if __name__ == "__main__":
    run()
