"""NATS JetStream helpers: idempotent stream/consumer setup, publishing, pull loops.

Subjects (see DESIGN.md):
  JOBS   (work queue) jobs.sms, jobs.email          Nats-Msg-Id = <message_id>:<attempt>
  EVENTS (limits)     events.message.<kind>, events.campaign.<kind>, events.contact.<kind>
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from google.protobuf.message import Message as PbMessage
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError
from prometheus_client import Counter

from shared import config

log = logging.getLogger("herald.bus")

JOBS_STREAM = "JOBS"
EVENTS_STREAM = "EVENTS"
SUBJECT_SMS_JOBS = "jobs.sms"
SUBJECT_EMAIL_JOBS = "jobs.email"

BUS_MESSAGES = Counter(
    "herald_bus_messages_total",
    "Bus messages handled by this process, by consumer and outcome (ack, nak, term).",
    ["consumer", "outcome"],
)
BUS_PUBLISHED = Counter(
    "herald_bus_published_total", "Messages published to JetStream, by stream.", ["stream"]
)


class TemporaryError(Exception):
    """Handler could not finish now; the message is redelivered after `delay` seconds."""

    def __init__(self, message: str, delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(Exception):
    """The message can never be handled (e.g. it does not parse): log and terminate it."""


async def connect(url: str | None = None, name: str = "herald") -> NATS:
    servers = (url or config.NATS_URL.get()).split(",")

    async def on_error(exc: Exception) -> None:
        log.warning("nats error: %s", exc)

    async def on_disconnect() -> None:
        log.warning("nats disconnected")

    async def on_reconnect() -> None:
        log.info("nats reconnected")

    # The client's default gives up reconnecting after ~2 minutes; a service must not.
    return await nats.connect(
        servers=servers,
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
    )


async def ensure_streams(js: JetStreamContext) -> None:
    """Create or update both streams; safe to call from every process at start-up."""
    wanted = [
        StreamConfig(
            name=JOBS_STREAM,
            subjects=["jobs.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=120.0,
        ),
        StreamConfig(
            name=EVENTS_STREAM,
            subjects=["events.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=7 * 24 * 3600.0,
            duplicate_window=120.0,
        ),
    ]
    for cfg in wanted:
        try:
            await js.stream_info(cfg.name)
            await js.update_stream(cfg)
        except NotFoundError:
            try:
                await js.add_stream(cfg)
            except Exception:  # another process created it between our two calls
                await js.stream_info(cfg.name)


async def publish(
    js: JetStreamContext, subject: str, payload: PbMessage, msg_id: str, stream: str = ""
) -> None:
    await js.publish(subject, payload.SerializeToString(), headers={"Nats-Msg-Id": msg_id})
    BUS_PUBLISHED.labels(stream or subject.split(".", 1)[0]).inc()


async def publish_many(
    js: JetStreamContext, items: list[tuple[str, PbMessage, str]], concurrency: int = 64
) -> None:
    """Publish with a bounded number of acks in flight instead of one round trip each."""
    sem = asyncio.Semaphore(concurrency)

    async def one(subject: str, payload: PbMessage, msg_id: str) -> None:
        async with sem:
            await publish(js, subject, payload, msg_id)

    await asyncio.gather(*(one(s, p, m) for s, p, m in items))


Handler = Callable[[Msg], Awaitable[Any]]


async def run_consumers(loops: dict[str, Awaitable[None]]) -> None:
    """Run several consumer loops of one process together; the first to fail ends the others
    (and raises), so the process never runs half its consumers silently."""
    tasks = [asyncio.ensure_future(loop) for loop in loops.values()]
    for name, task in zip(loops, tasks, strict=True):
        task.set_name(name)
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            t.result()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def pull_loop(
    js: JetStreamContext,
    *,
    stream: str,
    durable: str,
    subject: str,
    handler: Handler,
    stop: asyncio.Event,
    batch: int = 100,
    ack_wait: float = 30.0,
    max_ack_pending: int = 10000,
    concurrent: bool = False,
) -> None:
    """Fetch from a durable pull consumer until `stop` is set.

    The handler's return acks the message; TemporaryError naks with its delay;
    PermanentError terminates it; any other exception naks after 1 s (logged).
    With concurrent=True the batch is handled with asyncio.gather (handlers must be
    independent of each other); otherwise in order.
    """
    cfg = ConsumerConfig(
        durable_name=durable,
        filter_subject=subject,
        ack_wait=ack_wait,
        max_ack_pending=max_ack_pending,
    )
    sub = await js.pull_subscribe(subject, durable=durable, stream=stream, config=cfg)

    async def handle(msg: Msg) -> None:
        try:
            await handler(msg)
        except TemporaryError as exc:
            BUS_MESSAGES.labels(durable, "nak").inc()
            log.info("temporary failure, redelivering", extra={"consumer": durable, "reason": str(exc)})
            await msg.nak(delay=exc.delay)
            return
        except PermanentError as exc:
            BUS_MESSAGES.labels(durable, "term").inc()
            log.error("dropping unprocessable message", extra={"consumer": durable, "subject": msg.subject, "reason": str(exc)})
            await msg.term()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            BUS_MESSAGES.labels(durable, "nak").inc()
            log.exception("handler failed, redelivering", extra={"consumer": durable, "subject": msg.subject})
            await msg.nak(delay=1.0)
            return
        BUS_MESSAGES.labels(durable, "ack").inc()
        await msg.ack()

    while not stop.is_set():
        try:
            msgs = await sub.fetch(batch, timeout=0.5)
        except (NatsTimeout, TimeoutError):  # idle consumer: either flavour is raised
            continue
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # connection trouble: the client reconnects by itself
            log.warning("fetch failed: %s", exc, extra={"consumer": durable})
            await asyncio.sleep(0.5)
            continue
        if concurrent:
            await asyncio.gather(*(handle(m) for m in msgs))
        else:
            for m in msgs:
                await handle(m)
    await sub.unsubscribe()


def parse(msg: Msg, cls: type[PbMessage]) -> Any:
    obj = cls()
    try:
        obj.ParseFromString(msg.data)
    except Exception as exc:
        raise PermanentError(f"{msg.subject}: not a {cls.__name__}: {exc}") from exc
    return obj
