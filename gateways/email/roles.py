"""The email gateway's three roles and the process that runs any of them:

  sender    jobs.email -> SMTP relay (the channel runtime with the email channel)
  tracking  the public open/click/unsubscribe HTTP server
  bounces   the inbound SMTP server for bounces (DSN) and complaints (ARF)

`python -m gateways.email` runs all three in one process; `gateways.email.sender`,
`gateways.email.tracking_server` and `gateways.email.bounce_server` run one each, so the
public surfaces scale and fail apart from the sending. Each process serves gRPC health,
/metrics and writes its ready line (HERALD_READY_FILE).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateways.email import dedup, keys, settings, tokens
from gateways.email.dkimsign import DkimSigner
from gateways.email.skeleton import Skeletons
from gateways.email.smtp_pool import SmtpConfig, SmtpPool
from gateways.email.worker import EmailWorker, WorkerConfig
from shared import bus, cache, config, production
from shared import log as shared_log
from shared.adapters import self_check_all
from shared.grpc_server import ServiceRuntime

# Let in-flight SMTP transactions finish on SIGTERM: an interrupted one leaves its outcome
# unknown.
DRAIN_TIMEOUT = 30.0

_KEYS = production.need(settings.TRACKING_KEYS, fallback="a generated development key")
_BASE_URL = production.need(settings.TRACKING_BASE_URL,
                            fallback="links to the gateway's bound address")
_RELAY = production.need(settings.SMTP_HOST, fallback="a relay on the loopback interface")
# Production mode: no development fallback for any of these, per role.
SENDER = [*production.COMMON, *production.REDIS, *production.GRPC_SERVER, _KEYS, _BASE_URL,
          _RELAY]
TRACKING = [*production.COMMON, *production.GRPC_SERVER, _KEYS]
BOUNCES = [*production.COMMON, *production.REDIS, *production.GRPC_SERVER, _KEYS]
ALL = SENDER  # the sender's needs cover the other two roles'


@dataclass(frozen=True)
class Roles:
    name: str  # the process name (service of its ready line, logs)
    sender: bool = False
    tracking: bool = False
    bounces: bool = False


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


def check_alone(roles: Roles, log: logging.Logger) -> None:
    """What a role needs when the others run elsewhere; exit 2 with one line if missing."""
    if roles.sender and not roles.tracking and not settings.TRACKING_BASE_URL.get() \
            and settings.TRACKING_ADDR.get().endswith(":0"):
        log.error(f"{settings.TRACKING_BASE_URL.name} not set: the sender runs without the "
                  "tracking server and cannot tell where the links in its mails go")
        raise SystemExit(2)
    if roles.bounces and not roles.sender and not settings.BOUNCE_ADDR.get():
        log.error(f"{settings.BOUNCE_ADDR.name} is empty: the bounce server has nothing to serve")
        raise SystemExit(2)


def make_pool() -> SmtpPool:
    return SmtpPool(SmtpConfig(
        host=settings.SMTP_HOST.get(), port=settings.SMTP_PORT.get_int(),
        timeout=settings.SMTP_TIMEOUT.get_float(),
        username=settings.SMTP_USERNAME.get(), password=settings.SMTP_PASSWORD.get(),
        starttls=settings.SMTP_STARTTLS.get(), tls=settings.SMTP_TLS.get_bool(),
        verify_tls=settings.SMTP_TLS_VERIFY.get_bool(), helo=settings.SMTP_HELO.get(),
        rate=settings.SMTP_RATE.get_float(),
        max_per_connection=settings.SMTP_MAX_PER_CONNECTION.get_int(),
    ), settings.SMTP_POOL_SIZE.get_int())


def lease() -> float:
    # A claim or "written" marker younger than the lease may belong to a live worker that is
    # still waiting for the relay (its SMTP timeout, a few times over).
    return 5 * settings.SMTP_TIMEOUT.get_float()


def make_worker(js: Any, markers: dedup.SendMarkers, pool: SmtpPool, signer: tokens.Signer,
                base_url: str, log: logging.Logger) -> EmailWorker:
    dkim = load_dkim()
    if dkim is not None:
        log.info("DKIM signing on", extra={"selector": dkim.selector, "algorithm": dkim.algorithm})
    return EmailWorker(
        js, markers, pool,
        Skeletons(signer, base_url, settings.UNSUBSCRIBE_MAILTO.get()),
        WorkerConfig(
            max_attempts=settings.SMTP_MAX_ATTEMPTS.get_int(),
            retry_base=settings.SMTP_RETRY_BASE.get_float(),
            retry_max=settings.SMTP_RETRY_MAX.get_float(),
            unsubscribe_mailto=settings.UNSUBSCRIBE_MAILTO.get(),
            lease=lease(),
            verp=settings.VERP.get_bool(),
            verp_domain=settings.VERP_DOMAIN.get(),
            batch=settings.EMAIL_BATCH.get_int(),
            consumer=settings.EMAIL_CONSUMER.get(),
            ack_wait=settings.EMAIL_ACK_WAIT.get_float(),
        ),
        dkim=dkim, dkim_domain=settings.DKIM_DOMAIN.get(),
    )


async def serve(roles: Roles, signing: list[bytes]) -> None:
    """Run `roles` until SIGTERM/SIGINT, then drain the sender and stop the servers."""
    from gateways.email.bounces import BounceServer
    from gateways.email.tracking import TrackingServer

    log = shared_log.setup(roles.name)
    rt = ServiceRuntime(roles.name)
    rt.install_signal_handlers()
    rt.start_metrics()
    await rt.start_grpc([])
    signer = tokens.Signer(signing)
    nc = await bus.connect(name=roles.name)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    redis = cache.connect() if roles.sender or roles.bounces else None
    markers = None
    if redis is not None:
        markers = dedup.email_markers(redis, settings.DEDUP_TTL.get_int(), lease=lease())
    ready: dict[str, Any] = {}
    closers: list[Any] = []

    tracking = None
    base_url = settings.TRACKING_BASE_URL.get()
    if roles.tracking:
        tracking = TrackingServer(js, signer, settings.TRACKING_TRUST_FORWARDED.get_bool(),
                                  rate=settings.TRACKING_RATE.get_float(),
                                  burst=settings.TRACKING_BURST.get_float(),
                                  max_body=settings.TRACKING_MAX_BODY.get_int())
        ready["tracking_port"] = await tracking.start(settings.TRACKING_ADDR.get())
        base_url = base_url or f"http://{tracking.host}:{ready['tracking_port']}"
        closers.append(tracking.stop)
    elif not base_url:  # checked by check_alone: a fixed tracking address
        base_url = f"http://{settings.TRACKING_ADDR.get()}"
    if roles.sender or roles.tracking:
        ready["tracking_url"] = base_url

    worker = pool = None
    if roles.sender:
        assert markers is not None
        pool = make_pool()
        worker = make_worker(js, markers, pool, signer, base_url, log)
    if roles.bounces:
        ready["bounce_port"] = 0
        if settings.BOUNCE_ADDR.get():
            assert markers is not None
            bounce_server = BounceServer(js, signer, markers, settings.BOUNCE_MAX_SIZE.get_int())
            ready["bounce_port"] = await bounce_server.start(settings.BOUNCE_ADDR.get())
            closers.append(bounce_server.stop)

    stop = asyncio.Event()
    consumer = asyncio.create_task(worker.run(stop) if worker is not None else stop.wait())
    rt.write_ready(**ready)

    waiter = asyncio.create_task(rt.wait())
    done, _ = await asyncio.wait({waiter, consumer}, return_when=asyncio.FIRST_COMPLETED)
    if consumer in done and consumer.exception() is not None:
        exc = consumer.exception()
        log.error("job consumer stopped", exc_info=exc,
                  extra={"reason": f"{type(exc).__name__}: {exc}"})
    log.info("shutting down")
    stop.set()
    waiter.cancel()
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await asyncio.wait_for(consumer, DRAIN_TIMEOUT)
    for close in closers:
        await close()
    if pool is not None:
        await pool.close()
    with contextlib.suppress(Exception):
        await nc.drain()
    if redis is not None:
        await redis.aclose()
    await rt.shutdown()
    if consumer.done() and not consumer.cancelled() and consumer.exception() is not None:
        raise SystemExit(1)


def run(roles: Roles, requirements: list[production.Requirement]) -> None:
    production.enforce(roles.name, requirements)
    self_check_all()
    log = shared_log.setup(roles.name)
    check_alone(roles, log)
    # Checked before anything binds or connects: a gateway without a secret key never serves.
    signing = signing_keys(log)
    if roles.sender and settings.UVLOOP.get_bool():
        try:
            import uvloop
        except ImportError:
            uvloop = None  # type: ignore[assignment]
        if uvloop is not None:
            uvloop.run(serve(roles, signing))
            return
    asyncio.run(serve(roles, signing))
