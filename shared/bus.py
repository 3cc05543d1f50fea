"""NATS JetStream helpers: idempotent stream/consumer setup, publishing, pull loops.

Subjects (see DESIGN.md):
  JOBS   (work queue) jobs.sms, jobs.email          Nats-Msg-Id = <message_id>:<attempt>
  EVENTS (limits)     events.message.<kind>, events.campaign.<kind>, events.contact.<kind>
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import nats
from google.protobuf.message import Message as PbMessage
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import APIError, NotFoundError
from prometheus_client import Counter

from shared import config, jetstream_lag

log = logging.getLogger("herald.bus")

JOBS_STREAM = "JOBS"
EVENTS_STREAM = "EVENTS"
SUBJECT_SMS_JOBS = "jobs.sms"
SUBJECT_EMAIL_JOBS = "jobs.email"
DUPLICATE_WINDOW = 120.0  # seconds of Nats-Msg-Id de-dup (the server's default)

REPLICAS = config.setting(
    "HERALD_JETSTREAM_REPLICAS", "1",
    "Replicas of the JOBS and EVENTS streams (1, or 3 on a 3-node NATS cluster). Applied when a "
    "process creates the streams, and to a live stream whose replica count differs; a change "
    "the server refuses (e.g. 3 on a single server) is logged as an error and the process runs "
    "with the stream as it is.",
)
JOBS_MAX_BYTES = config.setting(
    "HERALD_JOBS_MAX_BYTES", "-1",
    "Size cap of the JOBS stream: -1 (unlimited), bytes, or a number with a unit (KiB, MiB, GiB, "
    "TiB or K, M, G, T = powers of 1024; KB, MB, GB, TB = powers of 1000), e.g. 10GiB. When "
    "full, new jobs are refused (discard policy new: dispatch fails loudly and retries) rather "
    "than dropping queued jobs.",
)
EVENTS_MAX_BYTES = config.setting(
    "HERALD_EVENTS_MAX_BYTES", "-1",
    "Size cap of the EVENTS stream (same format as HERALD_JOBS_MAX_BYTES). When full, the "
    "oldest events are dropped (discard policy old): size it so that even the slowest "
    "consumer's backlog fits.",
)
EVENTS_MAX_AGE = config.setting(
    "HERALD_EVENTS_MAX_AGE", "7d",
    "How long the EVENTS stream keeps an event: seconds, or a number with s, m, h or d "
    "(e.g. 36h, 7d); 0 = no age limit. Stats rebuild catch-up and consumers that were down "
    "replay from it, so keep it longer than any outage you want to recover from.",
)
LAG_INTERVAL = config.setting(
    "HERALD_LAG_INTERVAL", "5",
    "Seconds between two refreshes of the consumer lag gauges "
    "(herald_jetstream_consumer_{pending,ack_pending,redelivered}_messages): each process asks "
    "the server once per interval about each durable it consumes, off the consume path.",
)

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


def parse_size(setting: config.Setting) -> int:
    """A byte count: -1 (unlimited), a plain number, or a number with a unit (KiB, MiB, GiB,
    TiB or K, M, G, T are powers of 1024; KB, MB, GB, TB powers of 1000; B is bytes)."""
    raw = setting.get().strip()
    if raw == "-1":
        return -1
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)", raw)
    factor = _SIZE_UNITS.get(m.group(2).upper()) if m else None
    size = int(float(m.group(1)) * factor) if m and factor else 0
    if size <= 0:
        raise ValueError(f"{setting.name}={raw!r} is not a size (-1, 1073741824, 512MiB, 10GiB)")
    return size


_SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KIB": 1 << 10, "M": 1 << 20, "MIB": 1 << 20,
               "G": 1 << 30, "GIB": 1 << 30, "T": 1 << 40, "TIB": 1 << 40,
               "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(setting: config.Setting) -> float:
    """Seconds: a plain number or a number with s, m, h or d; 0 means unlimited."""
    raw = setting.get().strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd]?)", raw)
    if m is None:
        raise ValueError(f"{setting.name}={raw!r} is not a duration (0, 3600, 90m, 36h, 7d)")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


# Stream settings Herald owns: a live stream is updated when one of these differs from the
# configured value; every other field (description, max_msgs, placement, ...) is the
# operator's and is left as found.
OWNED_FIELDS = ("subjects", "num_replicas", "max_bytes", "max_age", "duplicate_window", "discard")


def wanted_streams() -> list[StreamConfig]:
    """Both streams as the settings describe them (read at each call)."""
    replicas = REPLICAS.get_int()
    if replicas < 1:
        raise ValueError(f"{REPLICAS.name}={replicas} must be at least 1")
    return [
        StreamConfig(
            name=JOBS_STREAM,
            subjects=["jobs.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=replicas,
            max_bytes=parse_size(JOBS_MAX_BYTES),
            # A full JOBS stream refuses new publishes (the dispatcher sees the error and
            # retries later) instead of dropping the oldest queued jobs: with discard=old a
            # job would vanish silently and its message stay QUEUED for ever.
            discard=DiscardPolicy.NEW,
            max_age=0.0,  # queued jobs never expire here: the gateways apply the job TTL
            duplicate_window=DUPLICATE_WINDOW,
        ),
        StreamConfig(
            name=EVENTS_STREAM,
            subjects=["events.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=replicas,
            max_bytes=parse_size(EVENTS_MAX_BYTES),
            # Events are history kept for a time: when full, the oldest (long consumed) go.
            # Refusing new ones would stop every gateway from recording outcomes.
            discard=DiscardPolicy.OLD,
            max_age=parse_duration(EVENTS_MAX_AGE),
            duplicate_window=DUPLICATE_WINDOW,
        ),
    ]


def _owned(cfg: StreamConfig, field: str) -> Any:
    """A field in comparable form (the server reports unset limits as -1 or 0)."""
    value = getattr(cfg, field)
    if field == "subjects":
        return sorted(value or [])
    if field == "num_replicas":
        return value or 1
    if field == "max_bytes":
        return -1 if value in (None, 0) else value
    if field in ("max_age", "duplicate_window"):
        return round(float(value or 0.0), 3)
    if field == "discard":
        return DiscardPolicy(value or DiscardPolicy.OLD)
    return value


def owned_changes(live: StreamConfig, wanted: StreamConfig) -> dict[str, tuple[Any, Any]]:
    """{field: (live value, wanted value)} for the owned fields that differ."""
    changes = {}
    for field in OWNED_FIELDS:
        have, want = _owned(live, field), _owned(wanted, field)
        if have != want:
            changes[field] = (have, want)
    return changes


def _describe(changes: dict[str, tuple[Any, Any]]) -> str:
    def show(v: Any) -> str:
        return v.value if isinstance(v, DiscardPolicy) else str(v)

    return ", ".join(f"{k}: {show(a)} -> {show(b)}" for k, (a, b) in changes.items())


async def ensure_streams(js: JetStreamContext) -> None:
    """Create both streams with the configured limits, or bring a live stream's owned fields
    to the configured values; safe to call from every process at start-up. A stream already
    as configured is not touched; a change the server refuses (e.g. more replicas than the
    cluster has) is logged and the process carries on with the stream as it is."""
    for want in wanted_streams():
        try:
            info = await js.stream_info(want.name)
        except NotFoundError:
            await _create_stream(js, want)
            continue
        changes = owned_changes(info.config, want)
        if not changes:
            continue
        merged = dataclasses.replace(info.config, **{f: getattr(want, f) for f in changes})
        try:
            await js.update_stream(merged)
        except APIError as exc:
            log.error("stream update refused by the server; running with the stream as it is",
                      extra={"stream": want.name, "changes": _describe(changes),
                             "error": exc.description or str(exc), "err_code": exc.err_code})
            continue
        log.info("stream updated", extra={"stream": want.name, "changes": _describe(changes)})


async def _create_stream(js: JetStreamContext, want: StreamConfig) -> None:
    try:
        await js.add_stream(want)
    except Exception as exc:
        try:  # another process may have created it between our two calls
            await js.stream_info(want.name)
        except NotFoundError:
            reason = exc.description if isinstance(exc, APIError) else str(exc)
            raise RuntimeError(f"cannot create stream {want.name}: {reason}") from exc
        return
    log.info("stream created", extra={
        "stream": want.name, "replicas": want.num_replicas, "max_bytes": want.max_bytes,
        "max_age": want.max_age, "discard": DiscardPolicy(want.discard).value})


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


Handler = Callable[[Any], Awaitable[Any]]  # a shared.jsfast.JsMsg in, anything out


def watch_lag(js: JetStreamContext, stream: str, durable: str) -> None:
    """Export this durable's lag (pending, ack pending, redelivered) from this process until
    unwatch_lag or the connection closes. shared.consumer calls it once it has subscribed."""
    jetstream_lag.exporter(LAG_INTERVAL.get_float()).watch(js, stream, durable)


def unwatch_lag(stream: str, durable: str) -> None:
    jetstream_lag.exporter(LAG_INTERVAL.get_float()).unwatch(stream, durable)


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
    """Fetch from a durable pull consumer until `stop` is set (shared.consumer, one message
    at a time). The handler's return acks the message; TemporaryError naks with its delay;
    PermanentError terminates it; any other exception naks after 1 s (logged). With
    concurrent=True the batch is handled with asyncio.gather (handlers must be independent
    of each other); otherwise in order. Nothing is fetched ahead of the handler."""
    from shared import consumer  # consumer builds on this module

    spec = consumer.Durable(stream, durable, subject, ack_wait=ack_wait,
                            max_ack_pending=max_ack_pending, batch=batch)
    await consumer.Consumer(js, spec, consumer.per_message(handler, durable, concurrent=concurrent),
                            prefetch=0).run(stop)


def parse(msg: Msg | Any, cls: type[PbMessage]) -> Any:
    """msg: a nats-py Msg or a shared.jsfast.JsMsg (anything with .data and .subject)."""
    obj = cls()
    try:
        obj.ParseFromString(msg.data)
    except Exception as exc:
        raise PermanentError(f"{msg.subject}: not a {cls.__name__}: {exc}") from exc
    return obj
