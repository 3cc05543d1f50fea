"""The SMPP gateway worker: SMS jobs from JetStream -> submit_sm on a route's binds;
receipts and replies -> events.

Job path (many jobs in flight so every window fills), batch-shaped: jobs are pulled with
  shared.jsfast, a fetched batch is claimed with one Redis call (send marker "held" by this
  process: two pods never work on one job), each job waits in its bind's FIFO; when the
  window has room its marker moves to "written" for exactly the jobs of one socket write,
  confirmed in Redis (one call per write batch) BEFORE the bytes go out (SmppClient's gate):
  "possibly sent" starts there and nowhere earlier. It goes out as submit_sm per part, in
  order, on one bind (results come back through _Job.on_result, no task per message), then
  finished jobs are group-committed (_Recorder): markers ok:<route>|<ids> -> publish
  SUBMITTED -> store the id mappings -> ack, one Redis call / one publish burst / one ack
  write per batch, in that order for every job.
Redelivered jobs (store.py has the marker states): an outcome is re-stated, never resent;
  "held" by a process that is gone (or for far too long) is taken over and sent cleanly;
  "written" by a process that is gone, without an outcome, is ABANDONED (FAILED, category
  UNKNOWN: the SMSC may have accepted it). If Redis lost its data (shared.epoch moved on), a
  redelivered job without a marker that was published before the new epoch may have been
  sent under a lost marker: ABANDONED too (reason redis_lost), never resent.
  Mappings are written after SUBMITTED so a receipt's event can never overtake it on the
  bus: a receipt arriving earlier waits for the recording in memory (same process). The
  parts of a multipart message are mapped as each one's submit_sm_resp arrives (memory and
  Redis), not after the last part: under throttling the first parts' receipts come first.
  A receipt whose mapping is not visible yet waits in memory for it (woken when this
  process maps the id, Redis looked up again meanwhile) for HERALD_SMPP_RECEIPT_MATCH_WAIT;
  nothing relies on the SMSC resending a refused receipt (many never do).
Refusals: ESME_RTHROTTLED / ESME_RMSGQFUL pause and slow the bind and nak the job with a
  delay (later parts of a multipart message are retried in place instead: earlier parts
  are out); ESME_RSYSERR is retried in place with exponential backoff up to a limit;
  anything else is FAILED with the SMPP code, its description and a failure category.
  No response (timeout, connection lost): FAILED as unknown, never resubmitted.
Receipt path: parse (TLVs + Appendix B) -> mapping by the route's id format whose
  destination is the receipt's source address (ids an SMSC reissued after a restart are
  never credited to an older message) -> per-part state -> publish DELIVERED (every part
  delivered) / FAILED (any part failed) -> only then deliver_sm_resp OK. A final receipt
  credited to no message from Redis (e.g. Redis lost the map) is published as an
  UnmatchedReceipt on events.receipt.unmatched and answered OK once stored: the campaigns
  ledger, the durable record, matches it by provider_message_id and destination. Counted by
  reason and logged, rate-limited. Replies: events.message.replied linked to the last message
  sent to that number from that sender; opt-out keywords -> events.contact.opted_out too.
Messages left SUBMITTED without a final receipt are swept by the campaigns scheduler from
  the ledger (ASSUMED_DELIVERED): nothing here that a Redis loss could stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import time
import unicodedata
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig

from gateways.smpp import events, metrics, pdu, ratelog, receipts, settings
from gateways.smpp.routes import IdFormat, RouteConfig, choose
from gateways.smpp.session import (
    ClientConfig,
    NotBound,
    NotWritten,
    ResponseTimeout,
    SmppClient,
)
from gateways.smpp.store import RECLAIMED, Flusher, Mapping, Marker, Store, id_key
from shared import bus, channels, epoch, jsfast, templating
from shared import smstext as encoding
from shared.masking import mask_phone

log = logging.getLogger("herald.smpp.gateway")

# The generated modules' top-level enum constants: EnumTypeWrapper attribute access
# (e.MessageEventKind.X) looks the name up on every use, ~3 µs each (measured).
K = e
FC = c

# Refusals that mean "not now": the bind slows down and the job is redelivered later.
THROTTLE_STATUSES = {pdu.ESME_RTHROTTLED, pdu.ESME_RMSGQFUL}
RETRY_STATUSES = {pdu.ESME_RSYSERR, pdu.ESME_RX_T_APPN}

_CATEGORY_BY_STATUS = {
    0x0A: FC.FAILURE_CATEGORY_CONFIG_ERROR,    # ESME_RINVSRCADR
    0x0B: FC.FAILURE_CATEGORY_INVALID_ADDRESS,  # ESME_RINVDSTADR
    0x0D: FC.FAILURE_CATEGORY_CONFIG_ERROR,    # ESME_RBINDFAIL
    0x0E: FC.FAILURE_CATEGORY_CONFIG_ERROR,    # ESME_RINVPASWD
    0x0F: FC.FAILURE_CATEGORY_CONFIG_ERROR,    # ESME_RINVSYSID
    0x04: FC.FAILURE_CATEGORY_CONFIG_ERROR,    # ESME_RINVBNDSTS
    0x48: FC.FAILURE_CATEGORY_CONFIG_ERROR,    # ESME_RINVSRCTON
    0x49: FC.FAILURE_CATEGORY_CONFIG_ERROR,    # ESME_RINVSRCNPI
    0x50: FC.FAILURE_CATEGORY_INVALID_ADDRESS,  # ESME_RINVDSTTON
    0x51: FC.FAILURE_CATEGORY_INVALID_ADDRESS,  # ESME_RINVDSTNPI
    0x01: FC.FAILURE_CATEGORY_CONTENT_REJECTED,  # ESME_RINVMSGLEN
    0x43: FC.FAILURE_CATEGORY_CONTENT_REJECTED,  # ESME_RINVESMCLASS
    0x58: FC.FAILURE_CATEGORY_THROTTLED,       # ESME_RTHROTTLED
    0x14: FC.FAILURE_CATEGORY_THROTTLED,       # ESME_RMSGQFUL
    0x62: FC.FAILURE_CATEGORY_EXPIRED,         # ESME_RINVEXPIRY
}

MAX_ALPHANUMERIC_SENDER = 11  # GSM limit for alphanumeric originators
# Redis re-lookups of a receipt waiting for its mapping (another replica may be storing it;
# one of ours wakes it at once); the last delay repeats until receipt_match_wait is over.
RECEIPT_RECHECKS = (0.05, 0.2, 0.5, 1.0, 2.0)
MAX_WAITING_RECEIPTS = 20000  # receipts held for their mapping at once (memory bound)
ABANDONED_DESCRIPTION = "the SMSC may have accepted it; not resent to avoid a duplicate"


UNWRITTEN_MAX = 100_000  # jobs remembered as handed back unwritten (~100 bytes each)


def cause(exc: BaseException) -> str:
    """'TimeoutError: ' says more than '' (str() of many exceptions is empty)."""
    return f"{type(exc).__name__}: {exc}"


def failure_category(status: int) -> int:
    return _CATEGORY_BY_STATUS.get(status, FC.FAILURE_CATEGORY_CARRIER_REJECTED)


class JobRejected(Exception):
    """The job cannot be sent as given (address, sender, text, route)."""

    def __init__(self, code: str, description: str, category: int) -> None:
        super().__init__(description)
        self.code = code
        self.category = category


_NUMBER_PUNCTUATION = str.maketrans("", "", " -().")


def destination_address(to: str) -> tuple[str, int, int]:
    """E.164 '+447700900123' -> ('447700900123', TON international, NPI ISDN)."""
    if to[:1] == "+" and to.isascii() and to[1:].isdigit() and 4 <= len(to) <= 21:  # usual E.164
        return to[1:], 1, 1
    s = to.strip().translate(_NUMBER_PUNCTUATION)
    ton = 1
    if s.startswith("+"):
        s = s[1:]
    elif s.startswith("00"):
        s = s[2:]
    else:
        ton = 0  # unknown: let the SMSC interpret it
    if not (s.isascii() and s.isdigit()) or not 3 <= len(s) <= 20:
        raise JobRejected("INVALID_ADDRESS", f"destination {to!r} is not a phone number",
                          FC.FAILURE_CATEGORY_INVALID_ADDRESS)
    return s, ton, 1


def source_address(sender: str) -> tuple[str, int, int]:
    """Digits -> international (TON 1) or short code (TON 3); otherwise alphanumeric (TON 5)."""
    s = sender.strip()
    digits = s[1:] if s.startswith("+") else s
    if digits.isdigit() and len(digits) <= 20:
        return (digits, 1, 1) if len(digits) > 8 else (digits, 3, 0)
    if not s or len(s) > MAX_ALPHANUMERIC_SENDER or encoding.gsm7_encode(s) is None:
        raise JobRejected("INVALID_SENDER",
                          f"sender {sender!r} is not a number or 1-{MAX_ALPHANUMERIC_SENDER} GSM characters",
                          FC.FAILURE_CATEGORY_CONFIG_ERROR)
    return s, 5, 0


def job_ack_wait(response_timeout: float) -> float:
    return max(30.0, 4 * response_timeout)


def in_flight_cap(routes: list[RouteConfig]) -> int:
    """Jobs to hold between fetch and ack: 4x the window slots (a job stays in flight until
    its outcome is recorded and acked, and at a few thousand msg/s the record step's Redis
    and NATS round trips hold ~2 windows' worth; with 2x the windows stood empty, 4x gave
    +13 % msg/s). When every route is rate-limited, no more than a quarter of ack_wait's
    worth at that rate, so queued jobs are never redelivered while they wait their turn."""
    cap = max(64, 4 * sum(r.client.window * r.binds for r in routes))
    rates = [r.client.throughput * r.binds for r in routes]
    if rates and all(rate > 0 for rate in rates):
        ack_wait = job_ack_wait(max(r.client.response_timeout for r in routes))
        cap = min(cap, max(1, int(sum(rates) * ack_wait / 4)))
    return cap


def render_text(job: e.MessageJob) -> str:
    """The SMS text of this recipient: its template rendered with job.fields (plain text, the
    bulk case, skips Jinja). Raises JobRejected, never sends an unrendered template."""
    source = text = channels.sms_content(job).text
    if templating.is_template(text):
        try:
            text = templating.render(text, templating.context(dict(job.fields)))
        except templating.TemplateError as exc:
            raise JobRejected("TEMPLATE_ERROR", f"the SMS text template could not be rendered: {exc}",
                              FC.FAILURE_CATEGORY_CONTENT_REJECTED) from exc
    if not text or text.isspace():
        raise JobRejected("EMPTY_TEXT", "the SMS text is empty" + (" once rendered" if source else ""),
                          FC.FAILURE_CATEGORY_CONTENT_REJECTED)
    return text


def _fold(word: str) -> str:
    """'Arrêt' -> 'ARRET': keywords match in any case and with or without accents."""
    nfkd = unicodedata.normalize("NFKD", word)
    return "".join(ch for ch in nfkd if not unicodedata.combining(ch)).upper()


@dataclass(frozen=True)
class GatewayConfig:
    subject: str = bus.SUBJECT_SMS_JOBS
    consumer: str = "smpp"
    default_sender: str = "HERALD"
    throttle_delay: float = 1.0
    mapping_ttl: int = 259200
    dedup_ttl: int = 172800
    max_parts: int = 6
    udh16: bool = False
    record_retry_for: float = 20.0
    syserr_retries: int = 5
    holder_ttl: float = 15.0
    opt_out_keywords: tuple[str, ...] = ("STOP", "STOPALL", "UNSUBSCRIBE", "ARRET")
    mo_link_ttl: int = 604800
    max_in_flight: int = 0
    fetch_batch: int = 256
    receipt_match_wait: float = 10.0

    @classmethod
    def from_settings(cls) -> GatewayConfig:
        return cls(
            subject=settings.JOBS_SUBJECT.get(),
            consumer=settings.CONSUMER.get(),
            default_sender=settings.DEFAULT_SENDER.get(),
            throttle_delay=settings.THROTTLE_DELAY.get_float(),
            mapping_ttl=settings.DLR_MAPPING_TTL.get_int(),
            dedup_ttl=settings.DEDUP_TTL.get_int(),
            max_parts=settings.MAX_PARTS.get_int(),
            udh16=settings.UDH_16BIT.get_bool(),
            record_retry_for=settings.RECORD_RETRY_FOR.get_float(),
            syserr_retries=settings.SYSERR_RETRIES.get_int(),
            holder_ttl=settings.HOLDER_TTL.get_float(),
            opt_out_keywords=tuple(_fold(w.strip()) for w in settings.OPT_OUT_KEYWORDS.get().split(",")
                                   if w.strip()),
            mo_link_ttl=settings.MO_LINK_TTL.get_int(),
            max_in_flight=settings.MAX_IN_FLIGHT.get_int(),
            fetch_batch=settings.FETCH_BATCH.get_int(),
            receipt_match_wait=settings.RECEIPT_MATCH_WAIT.get_float(),
        )


class Route:
    """A configured route and its running binds."""

    def __init__(self, cfg: RouteConfig, sink: Callable[[RouteConfig], Any],
                 gate: Callable[[list[Any]], Awaitable[list[bool]]] | None = None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.id_format: IdFormat = cfg.id_format
        self.clients = [SmppClient(cfg.client, sink(cfg), gate) for _ in range(cfg.binds)]
        self._rr = 0
        self.ok_submits = 0  # accepted submit_sm not yet added to the counter (per batch)
        self.submits_ok = metrics.SUBMITS.labels(self.name, "ok")

    def start(self) -> None:
        for cl in self.clients:
            cl.start()

    def pick(self) -> SmppClient:
        """The bound bind with the most free window slots (round robin among equals); with
        none bound, the least loaded bind (its queue waits for the bind, see SmppClient)."""
        clients = self.clients
        n = len(clients)
        if n == 1:
            return clients[0]
        self._rr = (self._rr + 1) % n
        best: SmppClient | None = None
        for i in range(n):
            cl = clients[(self._rr + i) % n]
            if cl.bound.is_set() and (best is None or cl.free > best.free):
                best = cl
        return best or max(clients, key=lambda c: c.free)

    @property
    def bound(self) -> bool:
        return any(cl.bound.is_set() for cl in self.clients)

    async def wait_bound(self, timeout: float) -> bool:
        results = await asyncio.gather(*(cl.wait_bound(timeout) for cl in self.clients))
        return all(results)

    async def close(self) -> None:
        await asyncio.gather(*(cl.close() for cl in self.clients))


@dataclass
class Outcome:
    """What to record for one job once the SMSC has answered (see Gateway._record_many);
    its JetStream message is acked once it is recorded."""

    ident: Mapping
    marker: tuple[str, str] | None
    event: events.Outgoing | None
    parts: list[tuple[Mapping, list[str]]] = field(default_factory=list)
    msg: jsfast.JsMsg | None = None
    keys: list[str] = field(default_factory=list)         # id keys (early receipts wait on them)
    parked: list[_Receipt] = field(default_factory=list)  # receipts that came before the mapping


@dataclass
class _Receipt:
    route: Route
    receipt: receipts.Receipt
    reply: Callable[[int], None]
    source: str = ""  # the deliver_sm's source_addr: the handset the message went to
    tries: int = 0
    mapping: Mapping | None = None  # known already (it waited for its submit's recording)
    key: str = ""            # id key it is looked up by
    deadline: float = 0.0    # while waiting for its mapping: when to give up
    waiting: bool = False    # in Gateway._waiting (woken by a timer or by its mapping)
    mismatch: bool = False   # a mapping for its id exists, but for another number


def _noop(_status: int) -> None:
    """Reply of a receipt already answered."""


class _Job:
    """A MessageJob between its claim and its outcome: the SubmitItem its bind sends, one
    part after the other (results arrive through on_result, no task per message)."""

    __slots__ = ("gw", "msg", "ident", "route", "client", "parts", "head", "index", "ids",
                 "retries", "queued_at", "sent_at", "keys", "parked", "needs_gate")

    def __init__(self, gw: Gateway, msg: jsfast.JsMsg, ident: Mapping, route: Route,
                 parts: list[bytes], head: bytes) -> None:
        self.gw = gw
        self.msg = msg
        self.ident = ident
        self.route = route
        self.client: SmppClient | None = None
        self.parts = parts
        self.head = head
        self.index = self.retries = 0
        self.ids: list[str] = []
        # Parts accepted while later ones are still to go: their id keys in
        # Gateway._recording, and receipts that came for them meanwhile.
        self.keys: list[str] = []
        self.parked: list[_Receipt] = []
        # Its marker moves from held to written (Gateway._gate) before its first write.
        self.needs_gate = True
        # queued_at / sent_at are set by SmppClient.enqueue / _send

    def build_pdu(self, sequence: int) -> bytes:
        return pdu.submit_sm_with_head(sequence, self.head, self.parts[self.index])

    def on_result(self, result: Any) -> None:
        self.gw._on_result(self, result)


class _Recorder:
    """Group commit of outcomes: the outcomes finished while a flush runs go together into
    the next `flush(outcomes)` (markers, events, mappings: Gateway._record_many), retried in
    place on Redis/NATS trouble (leaving it to a redelivery would lose the SMSC ids), then
    their jobs are acked in one write. At most `concurrency` flushes run at once."""

    def __init__(self, gw: Gateway, flush: Callable[[list[Outcome]], Awaitable[Any]],
                 max_size: int = 1024, concurrency: int = 4) -> None:
        self.gw = gw
        self.flush = flush
        self._flusher: Flusher[Outcome] = Flusher(self._commit, self._commit_failed, max_size,
                                                  concurrency)

    def add(self, outcome: Outcome) -> None:
        self._flusher.add(outcome)

    @staticmethod
    def _commit_failed(batch: list[Outcome], exc: Exception) -> None:
        log.error("committing outcomes failed", exc_info=exc,
                  extra={"count": len(batch), "error": cause(exc)})

    async def _commit(self, batch: list[Outcome]) -> None:
        gw = self.gw
        msgs = [o.msg for o in batch if o.msg is not None]
        stored = False
        try:
            await gw._record(lambda: self.flush(batch))
            stored = True
        except Exception as exc:
            # Redis/NATS gone for longer than record_retry_for: the jobs come back later and
            # their markers say what was done (replayed, never resubmitted).
            log.error("recording outcomes failed; redelivering their jobs (their markers decide: "
                      "replayed or ABANDONED, never resubmitted)",
                      extra={"count": len(batch), "error": cause(exc),
                             "retried_for_s": gw.cfg.record_retry_for})
            await _quietly(jsfast.settle_many(msgs, jsfast.nak_payload(1.0)))
            bus.BUS_MESSAGES.labels(gw.cfg.consumer, "nak").inc(len(msgs))
        else:
            await _quietly(jsfast.settle_many(msgs))
            gw._acked.inc(len(msgs))
            gw._jobs_submitted.inc(sum(1 for o in batch if o.marker is not None and o.marker[0] == "ok"))
        finally:
            gw._flush_counters()
            for o in batch:
                gw._recorded(o, stored)
            gw._jobs_done(len(msgs))


class Gateway:
    def __init__(self, js: JetStreamContext, redis: aioredis.Redis,
                 routes: list[RouteConfig] | ClientConfig,
                 cfg: GatewayConfig | None = None) -> None:
        self.js = js
        self.cfg = cfg or GatewayConfig()
        if isinstance(routes, ClientConfig):
            routes = [RouteConfig(name=routes.name or "default", client=routes)]
        self.route_cfgs = routes
        self.store = Store(redis, self.cfg.mapping_ttl, self.cfg.dedup_ttl, self.cfg.mo_link_ttl)
        # This process in its send markers; alive while herald:smpp:holder:<holder> is.
        self.holder = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.routes = {r.name: Route(r, self._sink_for, self._gate) for r in routes}
        self.publisher = jsfast.Publisher(js._nc, timeout=events.PUBLISH_TIMEOUT)  # noqa: SLF001
        self.recorder = _Recorder(self, self._record_many)
        # Four flushes at once: each waits on JetStream acks and Redis, not on our CPU.
        self.receipts: Flusher[_Receipt] = Flusher(self._receipts_many, self._receipts_failed,
                                                   concurrency=4)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._response_timeout = max(r.client.response_timeout for r in routes)
        # A held/written marker older than this is stale even if its holder still lives (a
        # job in hand is acked or handed back well within it).
        self._stale_after = 2 * job_ack_wait(self._response_timeout) + self.cfg.record_retry_for
        self.max_in_flight = self.cfg.max_in_flight or in_flight_cap(routes)
        self._in_flight = 0  # jobs fetched and not yet acked/naked
        self._room = asyncio.Event()
        self._dispatched: set[int] = set()  # jobs of batches being started that went on their way
        # Jobs this process handed back without writing a byte of them: (message id, attempt)
        # -> the delivery count then. If Redis loses its data meanwhile, the very next delivery
        # (count + 1: nobody else had it in between) is known unsent and goes out cleanly
        # instead of ABANDONED (e.g. claimed, then the write gate failed during the outage).
        self._unwritten: OrderedDict[tuple[str, int], int] = OrderedDict()
        # id key -> (job still sending later parts, or outcome whose mappings are being
        # written; the part's mapping): receipts that find their id here wait in memory
        self._recording: dict[str, tuple[_Job | Outcome, Mapping]] = {}
        # id key -> receipts whose mapping is not visible yet (see _wait_for_mapping)
        self._waiting: dict[str, list[_Receipt]] = {}
        self._n_waiting = 0
        # Mappings of parts accepted while later parts are still to go, stored at once
        # (other replicas may receive their receipts).
        self._part_writes: Flusher[tuple[Mapping, list[str]]] = Flusher(
            self._write_parts, self._write_parts_failed, concurrency=2)
        self._unmatched_log = ratelog.RateLimitedLog(log)
        self._mo_log = ratelog.RateLimitedLog(log)
        self._abandoned_log = ratelog.RateLimitedLog(log, level=logging.WARNING)
        # Unmatched final receipts: published (events.receipt.unmatched) in batches, each
        # answered once its event is stored.
        self._unmatched_out: Flusher[_Receipt] = Flusher(self._publish_unmatched,
                                                         self._unmatched_failed, concurrency=2)
        # Sender/destination parsing and route choice per (sender, number prefix): the
        # same few senders repeat across a campaign.
        self._senders: dict[str, tuple[str, int, int]] = {}
        # Metric children of the per-message path, looked up once.
        self._acked = bus.BUS_MESSAGES.labels(self.cfg.consumer, "ack")
        self._jobs_submitted = metrics.JOBS.labels("submitted")
        self._receipt_counters = {stat: metrics.RECEIPTS.labels(stat)
                                  for stat in (*receipts.KNOWN_STATS, "OTHER")}

    @property
    def client(self) -> SmppClient:
        """The first bind of the first route (single-route callers and tests)."""
        return next(iter(self.routes.values())).clients[0]

    async def wait_bound(self, timeout: float) -> bool:
        results = await asyncio.gather(*(r.wait_bound(timeout) for r in self.routes.values()))
        return all(results)

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- lifecycle ----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Consume jobs until `stop` is set; then finish the jobs in hand (the windows
        drain), answer the receipts being handled, and unbind."""
        await self.publisher.start()
        try:
            await self.store.heartbeat(self.holder, self.cfg.holder_ttl)
            began = await epoch.current(self.store.redis)
            log.info("gateway process named in send markers",
                     extra={"holder": self.holder, "redis_epoch": began})
        except Exception as exc:  # claims fail (jobs nak'd) until Redis is back; the beat retries
            log.warning("Redis unavailable at start", extra={"holder": self.holder, "error": cause(exc)})
        for r in self.routes.values():
            r.start()
        beat = asyncio.create_task(self._heartbeat())
        try:
            await self._pull(stop)
        finally:
            await asyncio.gather(*(r.close() for r in self.routes.values()))
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            with contextlib.suppress(Exception):  # else it expires after holder_ttl
                await self.store.forget_holder(self.holder)
            self._drop_waiting()
            await self.publisher.close()
            self._flush_counters()

    async def _heartbeat(self) -> None:
        """Keep our holder key alive: markers we hold are ours while it lives."""
        period = max(0.05, self.cfg.holder_ttl / 3)
        while True:
            await asyncio.sleep(period)
            try:
                await self.store.heartbeat(self.holder, self.cfg.holder_ttl)
            except Exception as exc:  # our jobs' write checks fail meanwhile too: no harm
                log.warning("renewing the send-marker holder key failed",
                            extra={"holder": self.holder, "error": cause(exc)})

    async def _pull(self, stop: asyncio.Event) -> None:
        ack_wait = job_ack_wait(self._response_timeout)
        cap = self.max_in_flight
        cfg = ConsumerConfig(durable_name=self.cfg.consumer, filter_subject=self.cfg.subject,
                             ack_wait=ack_wait, max_ack_pending=max(10000, 2 * cap))
        batch = max(1, min(cap, self.cfg.fetch_batch))
        sub = jsfast.PullConsumer(self.js._nc, bus.JOBS_STREAM, self.cfg.consumer,  # noqa: SLF001
                                  config=cfg, batch=batch, prefetch=2)
        await sub.start()
        bus.watch_lag(self.js, bus.JOBS_STREAM, self.cfg.consumer)
        low = max(1, min(batch, cap // 4))
        try:
            while not stop.is_set():
                room = cap - self._in_flight
                if room < low:
                    self._room.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._room.wait(), 0.5)
                    continue
                msgs = await sub.fetch(min(room, batch), timeout=0.5)
                if msgs:
                    self._in_flight += len(msgs)
                    self._spawn(self._start(msgs))
        finally:
            # Buffered jobs go back at once; the ones in hand finish (windows drain), for
            # at most as long as a submit, its retries and its recording can take.
            await sub.close(nak_buffered=True)
            limit = time.monotonic() + 3 * self._response_timeout + self.cfg.record_retry_for + 5
            while self._in_flight > 0 and time.monotonic() < limit:
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), 0.5)
            if self._in_flight > 0:
                log.error("stopping with %d jobs unfinished; JetStream redelivers them", self._in_flight)

    def _flush_counters(self) -> None:
        for route in self.routes.values():
            n, route.ok_submits = route.ok_submits, 0
            if n:
                route.submits_ok.inc(n)

    def _jobs_done(self, n: int) -> None:
        self._in_flight -= n
        if self._in_flight <= self.max_in_flight * 3 // 4 or self._in_flight <= 0:
            self._room.set()

    # --- jobs ---------------------------------------------------------------------------
    async def _start(self, msgs: list[jsfast.JsMsg]) -> None:
        """Parse and check a batch of jobs, claim them with one Redis call, queue them on
        their binds."""
        try:
            await self._start_batch(msgs)
        except Exception:  # a bug, not a bad job: hand back what was not dispatched
            left = [m for m in msgs if not m._acked and id(m) not in self._dispatched]  # noqa: SLF001
            log.exception("starting a batch of %d jobs failed; %d handed back", len(msgs), len(left))
            await _quietly(jsfast.settle_many(left, jsfast.nak_payload(self.cfg.throttle_delay)))
            self._jobs_done(len(left))
        finally:
            for m in msgs:
                self._dispatched.discard(id(m))

    async def _start_batch(self, msgs: list[jsfast.JsMsg]) -> None:
        jobs: list[_Job] = []
        now = time.time()
        bad: list[jsfast.JsMsg] = []
        for msg in msgs:
            try:
                job = e.MessageJob.FromString(msg.data)
            except Exception as exc:
                log.error("dropping unprocessable job", extra={"reason": f"{msg.subject}: {exc}"})
                bad.append(msg)
                continue
            if not job.message_id:
                log.error("dropping unprocessable job", extra={"reason": "MessageJob without message_id"})
                bad.append(msg)
                continue
            if job.HasField("expires_at") and job.expires_at.seconds <= now:
                self._dispatched.add(id(msg))
                metrics.JOBS.labels("expired").inc()
                self._failed_now(msg, job, "EXPIRED", "job expired before it could be submitted",
                                 FC.FAILURE_CATEGORY_EXPIRED)
                continue
            try:
                jobs.append(self._prepare(msg, job))
            except JobRejected as exc:
                self._dispatched.add(id(msg))
                metrics.JOBS.labels("failed").inc()
                self._failed_now(msg, job, exc.code, str(exc), exc.category)
        if bad:
            bus.BUS_MESSAGES.labels(self.cfg.consumer, "term").inc(len(bad))
            await _quietly(jsfast.settle_many(bad, b"+TERM"))
            self._jobs_done(len(bad))
        if not jobs:
            return
        try:
            markers, began = await self.store.claim_many(
                [(j.ident.message_id, j.ident.attempt) for j in jobs], self.holder)
        except Exception as exc:  # Redis unavailable: nothing was sent, try again later
            log.warning("claiming jobs failed; redelivering them",
                        extra={"count": len(jobs), "error": cause(exc)})
            for j in jobs:
                self._handed_back_unwritten(j.ident, j.msg)
            bus.BUS_MESSAGES.labels(self.cfg.consumer, "nak").inc(len(jobs))
            await _quietly(jsfast.settle_many([j.msg for j in jobs], jsfast.nak_payload(self.cfg.throttle_delay)))
            self._jobs_done(len(jobs))
            return
        seen: list[tuple[_Job, Marker]] = []
        for job, marker in zip(jobs, markers, strict=True):
            self._dispatched.add(id(job.msg))
            if marker is not None and marker is not RECLAIMED:
                seen.append((job, marker))
            elif marker is None and self._maybe_sent_before_loss(job.msg, began) \
                    and not self._known_unwritten(job.ident, job.msg):
                self._complete(job, self._abandoned(job.ident, "redis_lost"))
            else:
                job.client = client = job.route.pick()
                client.enqueue(job)
        if seen:
            await self._replay_many(seen)

    def _handed_back_unwritten(self, ident: Mapping, msg: jsfast.JsMsg) -> None:
        try:
            delivered = int(msg.metadata.num_delivered or 0)
        except ValueError:  # not a JetStream delivery (tests)
            return
        key = (ident.message_id, ident.attempt)
        self._unwritten[key] = delivered
        self._unwritten.move_to_end(key)
        while len(self._unwritten) > UNWRITTEN_MAX:
            self._unwritten.popitem(last=False)

    def _known_unwritten(self, ident: Mapping, msg: jsfast.JsMsg) -> bool:
        """This process handed the job's previous delivery back unwritten (see _unwritten)."""
        before = self._unwritten.pop((ident.message_id, ident.attempt), None)
        if before is None:
            return False
        try:
            return int(msg.metadata.num_delivered or 0) == before + 1
        except ValueError:
            return False

    @staticmethod
    def _maybe_sent_before_loss(msg: jsfast.JsMsg, began: float) -> bool:
        """Claimed afresh, but delivered before and published before Redis's current data
        set began: its marker may have been lost with the rest (shared.epoch)."""
        try:
            meta = msg.metadata
        except ValueError:  # not a JetStream delivery (tests): nothing to judge by
            return False
        return epoch.maybe_sent_before_loss(meta.timestamp_ns / 1e9, meta.num_delivered, False, began)

    async def _gate(self, items: list[_Job]) -> list[bool]:
        """SmppClient's pre-write gate: our held markers -> written, one call per write."""
        return await self.store.mark_written([(j.ident.message_id, j.ident.attempt) for j in items],
                                             self.holder)

    def _on_result(self, job: _Job, result: Any) -> None:
        """A submit_sm's response (or NotBound / ResponseTimeout / ConnectionLost)."""
        if isinstance(result, pdu.Frame):
            status = result.status
            if status == pdu.ESME_ROK:
                job.route.ok_submits += 1  # added to the counter per recorded batch
                smsc_id = pdu.resp_message_id(result.raw)
                job.ids.append(smsc_id)
                job.index += 1
                if job.index < len(job.parts):
                    if smsc_id:
                        self._part_accepted(job, smsc_id)
                    job.client.enqueue(job)  # type: ignore[union-attr]
                else:
                    self._complete(job, self._accepted(job.ident, job.route, job.ids))
                return
            metrics.SUBMITS.labels(job.route.name, pdu.status_name(status)).inc()
            loop = asyncio.get_running_loop()
            client = job.client
            assert client is not None
            if status in THROTTLE_STATUSES:
                client.throttled(self.cfg.throttle_delay)
                if job.index == 0:
                    self._retry_later(job, f"SMSC answered {pdu.status_name(status)}")
                else:  # earlier parts are out: retry this one in place
                    loop.call_later(self.cfg.throttle_delay, client.enqueue, job)
                return
            if status in RETRY_STATUSES and job.retries < self.cfg.syserr_retries:
                loop.call_later(self.cfg.throttle_delay * 2 ** job.retries / 4, client.enqueue, job)
                job.retries += 1
                return
            self._complete(job, self._refused(job.ident, status, job.ids))
            return
        if isinstance(result, NotWritten) and result.elsewhere:
            # Another process took the job over (we looked gone): it is theirs to send.
            self._retry_later(job, str(result), self._response_timeout, release=False)
            return
        if isinstance(result, NotBound):
            if not job.ids:  # nothing went out: a redelivery may submit it all
                self._retry_later(job, f"not bound: {result}")
                return
            reason = "connection_lost"
        elif isinstance(result, ResponseTimeout):
            reason = "timeout"
        else:
            reason = "connection_lost"
        metrics.SUBMITS.labels(job.route.name, reason).inc()
        self._complete(job, self._unknown(job.ident, reason, job.ids))

    def _part_accepted(self, job: _Job, smsc_id: str) -> None:
        """A part accepted while later ones are still to go (they may wait seconds behind
        throttling): its mapping becomes visible now, in memory for this process's receipts
        and in Redis for the other replicas', instead of after the whole message."""
        ident, ids = job.ident, job.ids
        m = Mapping(ident.message_id, ident.campaign_id, ident.workspace_id, ident.attempt,
                    smsc_id, ident.to, ident.variant, len(ids), len(job.parts), job.route.name,
                    ids[0], time.time(), ident.sender)
        keys = job.route.id_format.store_keys(smsc_id)
        for k in keys:
            key = id_key(m.route, k)
            job.keys.append(key)
            self._register(key, job, m)
        self._part_writes.add((m, keys))

    async def _write_parts(self, items: list[tuple[Mapping, list[str]]]) -> None:
        w = self.store.writes()
        for m, keys in items:
            self.store.add_part_mapping(w, m, keys)
        await self.store.apply(w)

    @staticmethod
    def _write_parts_failed(items: list[tuple[Mapping, list[str]]], exc: Exception) -> None:
        # Not fatal: the message's recording writes every part's mapping again.
        log.warning("storing %d part mappings ahead of their message failed: %s", len(items), exc)

    def _register(self, key: str, holder: _Job | Outcome, m: Mapping) -> None:
        """An id's mapping is known in this process: receipts waiting for it go on now."""
        self._recording[key] = (holder, m)
        if self._waiting:
            waiting = self._waiting.pop(key, None)
            if waiting:
                for it in waiting:
                    self._wake(it)

    def _complete(self, job: _Job, outcome: Outcome) -> None:
        outcome.msg = job.msg
        if job.keys or job.parked:
            # Parts mapped ahead of the message: their receipts now wait for its recording.
            recording = self._recording
            for key in job.keys:
                entry = recording.get(key)
                if entry is not None and entry[0] is job:
                    recording[key] = (outcome, entry[1])
                    outcome.keys.append(key)
            outcome.parked.extend(job.parked)
            job.keys.clear()
            job.parked.clear()
        self.recorder.add(outcome)

    def _retry_later(self, job: _Job, reason: str, delay: float | None = None,
                     release: bool = True) -> None:
        """Nothing was submitted: drop our claim and let JetStream redeliver the job."""
        metrics.JOBS.labels("retry").inc()
        log.debug("job redelivered later", extra={"message_id": job.ident.message_id, "reason": reason})
        if release:  # ours, and not written: its next delivery may go out even if Redis forgot it
            self._handed_back_unwritten(job.ident, job.msg)
        self._spawn(self._release_and_nak(job, self.cfg.throttle_delay if delay is None else delay, release))

    async def _release_and_nak(self, job: _Job, delay: float, release: bool) -> None:
        try:
            if release:
                mid, attempt = job.ident.message_id, job.ident.attempt
                await self._record(lambda: self.store.release(mid, attempt, self.holder))
        except Exception as exc:  # its held marker is taken over once stale
            log.warning("releasing a job's send marker failed",
                        extra={"message_id": job.ident.message_id, "error": cause(exc)})
        finally:
            bus.BUS_MESSAGES.labels(self.cfg.consumer, "nak").inc()
            await _quietly(job.msg.nak(delay=delay))
            self._jobs_done(1)

    def _failed_now(self, msg: jsfast.JsMsg, job: e.MessageJob, code: str, description: str,
                    category: int) -> None:
        """A job that cannot be sent as given: FAILED, no claim (nothing to protect)."""
        ident = Mapping(job.message_id, job.campaign_id, job.workspace_id, job.attempt,
                        smsc_id="", to=job.to, variant=job.variant, route="")  # sent on no route
        self.recorder.add(Outcome(ident, None, self._failed_event(ident, code, description, category),
                                  msg=msg))

    def _sender(self, sender: str) -> tuple[str, int, int]:
        parsed = self._senders.get(sender)
        if parsed is None:
            parsed = source_address(sender)  # raises JobRejected: not cached
            if len(self._senders) < 4096:
                self._senders[sender] = parsed
        return parsed

    def _prepare(self, msg: jsfast.JsMsg, job: e.MessageJob) -> _Job:
        dest, dton, dnpi = destination_address(job.to)
        sender_raw = job.sender or self.cfg.default_sender
        src, ston, snpi = self._sender(sender_raw)
        text = render_text(job)
        rc = choose(self.route_cfgs, sender_raw, job.to)
        if rc is None:
            raise JobRejected("NO_ROUTE", f"no SMPP route for sender {sender_raw!r} to {job.to[:4]}...",
                              FC.FAILURE_CATEGORY_CONFIG_ERROR)
        try:
            enc = encoding.encode_text(text, max_parts=self.cfg.max_parts, udh16=self.cfg.udh16)
        except encoding.TextTooLong as exc:
            raise JobRejected("TEXT_TOO_LONG", str(exc), FC.FAILURE_CATEGORY_CONTENT_REJECTED) from exc
        head = pdu.submit_sm_head(
            source_addr=src, source_addr_ton=ston, source_addr_npi=snpi,
            destination_addr=dest, dest_addr_ton=dton, dest_addr_npi=dnpi,
            esm_class=enc.esm_class, registered_delivery=1, data_coding=enc.data_coding)
        ident = Mapping(job.message_id, job.campaign_id, job.workspace_id, job.attempt, "",
                        job.to, job.variant, parts=len(enc.parts), route=rc.name, sender=src)
        return _Job(self, msg, ident, self.routes[rc.name], enc.parts, head)

    # --- recording outcomes -------------------------------------------------------------
    def _accepted(self, ident: Mapping, route: Route, ids: list[str]) -> Outcome:
        now = time.time()
        first = Mapping(ident.message_id, ident.campaign_id, ident.workspace_id, ident.attempt,
                        ids[0], ident.to, ident.variant, 1, len(ids), route.name, ids[0], now,
                        ident.sender)
        # Part 1 is `first` itself (no dataclasses.replace on the per-message path).
        parts = [(first if i == 1 else first.for_part(i, smsc_id), route.id_format.store_keys(smsc_id))
                 for i, smsc_id in enumerate(ids, 1) if smsc_id]
        if len(parts) < len(ids):
            log.warning("submit_sm_resp without message_id: its receipt cannot be matched",
                        extra={"message_id": ident.message_id})
        # provider_message_id is part 1's id (the ledger's durable key for receipts that Redis
        # no longer maps); later parts' ids live in the Redis map only.
        outcome = Outcome(
            first, ("ok", f"{route.name}|{','.join(ids)}"),
            events.message(K.MESSAGE_EVENT_KIND_SUBMITTED, first,
                           events.event_key(ident.message_id, "submitted", ident.attempt),
                           provider_message_id=ids[0], parts=len(ids)),
            parts,
        )
        # Receipts for these ids that come before the mappings are stored wait for them
        # here instead of polling Redis (see _receipts_many).
        for m, keys in parts:
            for k in keys:
                key = id_key(m.route, k)
                outcome.keys.append(key)
                self._register(key, outcome, m)
        return outcome

    def _recorded(self, outcome: Outcome, stored: bool) -> None:
        """The outcome's flush ended: early receipts go on with the mapping they waited
        for, or (not stored) look it up again like any other receipt."""
        recording = self._recording
        for key in outcome.keys:
            entry = recording.get(key)
            if entry is not None and entry[0] is outcome:
                del recording[key]
        for it in outcome.parked:
            if not stored:
                it.mapping = None
            self._queue_receipt(it)
        outcome.parked.clear()

    def _failed_event(self, ident: Mapping, code: str, description: str, category: int,
                      ids: list[str] | None = None) -> events.Outgoing:
        fields: dict[str, Any] = dict(error_code=code, error_description=description,
                                      failure_category=category, parts=ident.parts)
        if ids:
            fields["provider_message_id"] = ids[0]
        return events.message(K.MESSAGE_EVENT_KIND_FAILED, ident,
                              events.event_key(ident.message_id, "failed", ident.attempt), **fields)

    def _refused(self, ident: Mapping, status: int, ids: list[str]) -> Outcome:
        metrics.JOBS.labels("failed").inc()
        desc = f"{pdu.status_name(status)}: {pdu.status_description(status)}"
        if ids:
            desc += f" (part {len(ids) + 1} of {ident.parts}; earlier parts were accepted)"
        code = pdu.status_code(status)
        return Outcome(ident, ("failed", code),
                       self._failed_event(ident, code, desc, failure_category(status), ids))

    def _unknown(self, ident: Mapping, reason: str, ids: list[str]) -> Outcome:
        if reason in metrics.ABANDONED_REASONS:
            return self._abandoned(ident, reason, replay=True)
        metrics.JOBS.labels("failed").inc()
        what = {"timeout": "no submit_sm_resp in time",
                "connection_lost": "the SMPP connection dropped before submit_sm_resp"}
        desc = f"{what.get(reason, reason)}; the SMSC may have accepted it, so it was not resubmitted"
        return Outcome(ident, ("unknown", reason),
                       self._failed_event(ident, reason.upper(), desc, FC.FAILURE_CATEGORY_UNKNOWN, ids))

    def _abandoned(self, ident: Mapping, reason: str, replay: bool = False) -> Outcome:
        """A job that may have reached the SMSC, with no outcome on record (its process died
        after writing it, or Redis lost its marker): FAILED, never resent. `replay`: the
        marker already says so (counted and logged when it was decided)."""
        metrics.JOBS.labels("failed").inc()
        if not replay:
            metrics.ABANDONED.labels(reason).inc()
            self._abandoned_log.info(
                reason, "job abandoned: the SMSC may have accepted it; not resent", reason=reason,
                message_id=ident.message_id, campaign_id=ident.campaign_id, route=ident.route)
        return Outcome(ident, ("unknown", reason),
                       self._failed_event(ident, "ABANDONED", ABANDONED_DESCRIPTION,
                                          FC.FAILURE_CATEGORY_UNKNOWN))

    async def _record(self, step: Callable[[], Awaitable[Any]]) -> None:
        deadline = time.monotonic() + self.cfg.record_retry_for
        delay = 0.05
        while True:
            try:
                await step()
                return
            except Exception as exc:
                if time.monotonic() + delay > deadline:
                    raise
                log.warning("recording submit outcomes failed; retrying", extra={"error": cause(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _record_many(self, outcomes: list[Outcome]) -> list[None]:
        """Markers (one script call) -> events (acks awaited together) -> mappings (one script call)."""
        w = self.store.writes()
        for o in outcomes:
            if o.marker is not None:
                self.store.add_mark(w, o.ident.message_id, o.ident.attempt, *o.marker)
        await self.store.apply(w)
        await events.publish_many(self.publisher, [o.event for o in outcomes if o.event is not None])
        w = self.store.writes()
        for o in outcomes:
            if o.parts:
                self.store.add_mappings(w, o.parts)
        await self.store.apply(w)
        return [None] * len(outcomes)

    async def _replay_many(self, seen: list[tuple[_Job, Marker]]) -> None:
        """Jobs whose marker was there already: an outcome is re-stated (same event ids),
        never resubmitted; a held or written marker is judged by whether its holder lives."""
        holders = sorted({m.holder for _j, m in seen if m.holder})
        try:
            alive = await self.store.live_holders(holders)
        except Exception as exc:  # cannot tell: look again later
            log.warning("checking send-marker holders failed; redelivering their jobs",
                        extra={"count": len(seen), "error": cause(exc)})
            for job, _m in seen:
                self._retry_later(job, "holder check failed", release=False)
            return
        takeovers: list[tuple[_Job, Marker]] = []
        for job, marker in seen:
            state = marker.state
            if state in ("held", "written", "pending"):
                if state == "pending":  # an earlier version's marker (taken at fetch)
                    stale = marker.age() > 3 * self._response_timeout + 5
                else:
                    stale = marker.holder not in alive or marker.age() > self._stale_after
                if not stale:  # another process is sending it right now
                    self._retry_later(job, "submit in progress elsewhere", self._response_timeout,
                                      release=False)
                elif state == "held":  # never written: ours to send now
                    takeovers.append((job, marker))
                else:  # written, no outcome: it may have reached the SMSC
                    self._complete(job, self._abandoned(job.ident, "abandoned"))
            else:
                self._replay(job, marker)
        if takeovers:
            await self._take_over(takeovers)

    async def _take_over(self, items: list[tuple[_Job, Marker]]) -> None:
        """Held markers of a process that is gone: ours if unchanged (compare-and-set, so
        that process could no longer move them to written), then sent like fresh claims."""
        try:
            won = await self.store.take_over(
                [(j.ident.message_id, j.ident.attempt, m.raw) for j, m in items], self.holder)
        except Exception as exc:
            log.warning("taking over stale send markers failed; redelivering their jobs",
                        extra={"count": len(items), "error": cause(exc)})
            won = [False] * len(items)
        for (job, _m), ok in zip(items, won, strict=True):
            if ok:
                metrics.JOBS.labels("taken_over").inc()
                job.client = client = job.route.pick()
                client.enqueue(job)
            else:
                self._retry_later(job, "send marker changed meanwhile", release=False)

    def _replay(self, job: _Job, marker: Marker) -> None:
        """An outcome on record: re-state it (same event ids), never resubmit."""
        ident = job.ident
        metrics.JOBS.labels("duplicate").inc()
        if marker.state == "ok":
            route_name, ids = marker.route_and_ids
            route = self.routes.get(route_name) or self.routes[ident.route]
            self._complete(job, self._accepted(ident, route, ids))
        elif marker.state == "failed":
            try:
                status = int(marker.value, 16)
            except ValueError:
                status = pdu.ESME_RSYSERR
            self._complete(job, self._refused(ident, status, []))
        else:  # unknown:<reason>, or a state this version does not know: never resend
            self._complete(job, self._unknown(ident, marker.value or marker.state, []))

    # --- inbound deliver_sm -------------------------------------------------------------
    def _sink_for(self, rc: RouteConfig) -> Callable[[pdu.Frame, Callable[[int], None]], None]:
        def sink(frame: pdu.Frame, reply: Callable[[int], None]) -> None:
            self.on_deliver(self.routes[rc.name], frame, reply)
        return sink

    def on_deliver(self, route: Route, frame: pdu.Frame, reply: Callable[[int], None]) -> None:
        try:
            sm = pdu.parse_sm(frame.raw)
        except pdu.ProtocolError as exc:  # unparseable: a resend cannot help
            metrics.RECEIPTS.labels("invalid").inc()
            log.error("undecodable deliver_sm dropped: %s", exc, extra={"pdu": frame.raw.hex()})
            reply(pdu.ESME_ROK)
            return
        if not receipts.is_receipt(sm.esm_class, sm.tlvs):
            self._spawn(self._mo(sm, reply))
            return
        receipt = receipts.parse(sm.payload, sm.tlvs)
        if receipt is None:
            metrics.RECEIPTS.labels("invalid").inc()
            log.error("receipt without a message id dropped", extra={"text": sm.payload[:200]})
            reply(pdu.ESME_ROK)
            return
        item = _Receipt(route, receipt, reply, sm.source_addr)
        self._queue_receipt(item)

    def _queue_receipt(self, item: _Receipt) -> None:
        self.receipts.add(item)

    @staticmethod
    def _receipts_failed(items: list[_Receipt], exc: Exception) -> None:
        log.warning("receipt batch failed, asking the SMSC to resend %d: %s", len(items), exc)
        for it in items:
            it.reply(pdu.ESME_RX_T_APPN)  # no-op for those already answered

    async def _resolve(self, items: list[_Receipt]) -> list[tuple[_Receipt, Mapping]]:
        """The mapping each receipt is credited to: the one under its id key (this process's
        memory first, then Redis) whose destination is the receipt's source address; with an
        `auto` id format, failing that, one under another reading of the id (an SMSC that
        reissued ids after a restart: the key the receipt's reading finds may hold an older
        message's mapping). A receipt that finds a mapping still being recorded here parks on
        it (_park); one that finds none waits for it (_wait_for_mapping)."""
        found: list[tuple[_Receipt, Mapping]] = []
        parked: list[tuple[_Receipt, _Job | Outcome, Mapping]] = []
        todo: list[_Receipt] = []
        recording = self._recording
        same = receipts.same_number
        for it in items:
            if it.mapping is not None:
                found.append((it, it.mapping))
                continue
            if not it.key:
                it.key = id_key(it.route.name, it.route.id_format.lookup_key(it.receipt.message_id))
            entry = recording.get(it.key)
            if entry is not None:
                if same(it.source, entry[1].to):
                    parked.append((it, *entry))
                    continue
                it.mismatch = True
            todo.append(it)
        if todo:
            others: list[_Receipt] = []
            raws = await self.store.redis.mget([it.key for it in todo])
            for it, raw in zip(todo, raws, strict=True):
                if raw is not None:
                    m = Mapping.loads(raw)
                    if same(it.source, m.to):
                        found.append((it, m))
                        continue
                    it.mismatch = True
                if it.mismatch and it.route.id_format.auto:
                    others.append(it)
                else:
                    self._wait_for_mapping(it)
            if others:
                await self._resolve_other_readings(others, found, parked)
        if parked:
            await self._park(parked)
        return found

    async def _resolve_other_readings(self, items: list[_Receipt], found: list[tuple[_Receipt, Mapping]],
                                      parked: list[tuple[_Receipt, _Job | Outcome, Mapping]]) -> None:
        recording = self._recording
        same = receipts.same_number
        lookups: list[tuple[_Receipt, list[str]]] = []
        for it in items:
            route = it.route.name
            keys = [id_key(route, k) for k in receipts.id_keys(it.receipt.message_id)[1:]]
            hit = next((entry for k in keys if (entry := recording.get(k)) is not None
                        and same(it.source, entry[1].to)), None)
            if hit is not None:
                parked.append((it, *hit))
            elif keys:
                lookups.append((it, keys))
            else:
                self._wait_for_mapping(it)
        if not lookups:
            return
        raws = await self.store.redis.mget([k for _it, keys in lookups for k in keys])
        pos = 0
        for it, keys in lookups:
            chosen = None
            for raw in raws[pos:pos + len(keys)]:
                if raw is not None and same(it.source, (m := Mapping.loads(raw)).to):
                    chosen = m
                    break
            pos += len(keys)
            if chosen is None:
                self._wait_for_mapping(it)
            else:
                found.append((it, chosen))

    async def _park(self, parked: list[tuple[_Receipt, _Job | Outcome, Mapping]]) -> None:
        """Receipts for ids whose message is still being sent or recorded: handled once its
        SUBMITTED event is out (_recorded), so no receipt's event overtakes it. A part of a
        multipart message (whose later parts may wait seconds behind throttling) and an
        intermediate receipt are answered now, their final stat stored first: many SMSCs
        never resend a receipt that was refused or not answered in time."""
        early: list[_Receipt] = []
        for it, holder, m in parked:
            it.mapping = m
            holder.parked.append(it)
            if m.parts > 1 or it.receipt.final is None:
                early.append(it)
        if not early:
            return
        finals = [(it.mapping, it.receipt.stat) for it in early
                  if it.mapping is not None and it.receipt.final is not None]
        if finals:
            await self.store.record_parts(finals)
        for it in early:
            it.reply(pdu.ESME_ROK)
            it.reply = _noop

    def _wait_for_mapping(self, it: _Receipt) -> None:
        """No mapping for this receipt yet (its submit_sm_resp may still be on its way, or
        another replica may be storing it): it waits in memory, woken as soon as this
        process maps the id (_register) or by a timer to look in Redis again, for at most
        receipt_match_wait. Only then is it given up (_unmatched): refusing it at once would
        lose it with the many SMSCs that never resend a refused receipt."""
        now = time.monotonic()
        if not it.deadline:
            it.deadline = now + self.cfg.receipt_match_wait
        if now >= it.deadline:
            self._unmatched(it, "address_mismatch" if it.mismatch else "unknown_id")
            return
        if self._n_waiting >= MAX_WAITING_RECEIPTS:  # published at once instead of waiting
            self._unmatched(it, "backlog")
            return
        delay = min(RECEIPT_RECHECKS[min(it.tries, len(RECEIPT_RECHECKS) - 1)], it.deadline - now)
        it.tries += 1
        it.waiting = True
        self._n_waiting += 1
        self._waiting.setdefault(it.key, []).append(it)
        asyncio.get_running_loop().call_later(delay, self._recheck, it)

    def _recheck(self, it: _Receipt) -> None:
        if not it.waiting:
            return  # woken by its mapping already
        waiting = self._waiting.get(it.key)
        if waiting is not None:
            with contextlib.suppress(ValueError):
                waiting.remove(it)
            if not waiting:
                del self._waiting[it.key]
        self._wake(it)

    def _wake(self, it: _Receipt) -> None:
        if it.waiting:
            it.waiting = False
            self._n_waiting -= 1
            self._queue_receipt(it)

    def _drop_waiting(self) -> None:
        """Stopping: receipts still waiting for a mapping are refused (their SMSC may resend
        them to another replica)."""
        waiting, self._waiting = self._waiting, {}
        for items in waiting.values():
            for it in items:
                it.waiting = False
                it.reply(pdu.ESME_RX_T_APPN)
        self._n_waiting = 0

    def _unmatched(self, it: _Receipt, reason: str) -> None:
        """A receipt credited to no message from Redis: counted by reason and logged
        (rate-limited). A final one is published as an UnmatchedReceipt for the campaigns
        ledger to match durably, and answered OK once stored (_publish_unmatched); an
        intermediate one (ENROUTE, ACCEPTD, ...) decides nothing and is answered at once."""
        metrics.RECEIPTS_UNMATCHED.labels(reason).inc()
        r = it.receipt
        self._unmatched_log.info(
            reason, f"delivery receipt matched no message ({reason})", reason=reason,
            route=it.route.name, smsc_id=r.message_id, stat=r.stat, source=mask_phone(it.source))
        if r.final is None:
            it.reply(pdu.ESME_ROK)
            return
        self._unmatched_out.add(it)

    async def _publish_unmatched(self, items: list[_Receipt]) -> None:
        await events.publish_many(self.publisher, [events.unmatched_receipt(
            it.route.name, it.receipt.message_id, it.source, it.receipt.stat, it.receipt.err)
            for it in items])
        metrics.RECEIPTS_PUBLISHED_UNMATCHED.inc(len(items))
        for it in items:
            it.reply(pdu.ESME_ROK)

    @staticmethod
    def _unmatched_failed(items: list[_Receipt], exc: Exception) -> None:
        log.warning("publishing unmatched receipts failed; asking the SMSC to resend them",
                    extra={"count": len(items), "error": cause(exc)})
        for it in items:
            it.reply(pdu.ESME_RX_T_APPN)

    async def _receipts_many(self, items: list[_Receipt]) -> None:
        found = await self._resolve(items)
        if not found:
            return
        multipart = [(m, it.receipt.stat) for it, m in found
                     if m.parts > 1 and it.receipt.final is not None]
        part_states = iter(await self.store.record_parts(multipart) if multipart else [])
        out: list[events.Outgoing] = []
        replies: list[_Receipt] = []
        now = time.time()
        stats: dict[str, int] = {}
        for it, m in found:
            r = it.receipt
            stats[r.stat] = stats.get(r.stat, 0) + 1
            replies.append(it)
            final = r.final
            if final is None:  # ENROUTE, ACCEPTD, ...: nothing to record yet
                continue
            if m.submitted_at:
                metrics.RECEIPT_LAG.observe(max(0.0, now - m.submitted_at))
            kind, category = final
            if m.parts > 1:
                states = next(part_states)
                failed = sorted(p for p, s in states.items() if s != "DELIVRD")
                if failed:
                    kind = K.MESSAGE_EVENT_KIND_FAILED
                    stat = states[failed[0]]
                    category = receipts.FINAL_STATS.get(stat, final)[1]
                    detail = f"part {failed[0]} of {m.parts}: "
                elif len(states) >= m.parts:
                    stat, detail = "DELIVRD", ""
                else:
                    continue  # other parts still to come
            else:
                stat, detail = r.stat, ""
            key = events.event_key(m.message_id, "dlr", m.attempt)
            ident = m if m.part == 1 else m.for_part(1, m.provider_id)
            fields: dict[str, Any] = dict(carrier_result=stat, provider_message_id=m.provider_id or m.smsc_id,
                                          parts=m.parts)
            if kind != K.MESSAGE_EVENT_KIND_DELIVERED:
                detail += f"carrier receipt stat:{stat} err:{r.err or '-'}"
                if r.network_error:
                    detail += f" network_error:{r.network_error}"
                fields.update(error_code=r.err, error_description=detail, failure_category=category)
            out.append(events.message(kind, ident, key, **fields))
        counters = self._receipt_counters
        for stat, n in stats.items():
            (counters.get(stat) or counters["OTHER"]).inc(n)
        await events.publish_many(self.publisher, out)
        for it in replies:
            it.reply(pdu.ESME_ROK)

    async def _mo(self, sm: pdu.ShortMessage, reply: Callable[[int], None]) -> None:
        try:
            status = await self.handle_mo(sm)
        except Exception:
            log.exception("reply handling failed; asking the SMSC to resend")
            status = pdu.ESME_RX_T_APPN
        reply(status)

    async def handle_mo(self, sm: pdu.ShortMessage) -> int:
        """A reply: events.message.replied linked to the last message sent from that sender
        (our number) to that phone, plus events.contact.opted_out for opt-out keywords."""
        body, _concat = encoding.strip_udh(sm.payload, sm.esm_class)
        text = encoding.decode(body, sm.data_coding)
        phone = "".join(ch for ch in sm.source_addr if ch.isdigit())
        if phone.startswith("00"):
            phone = phone[2:]
        # (our sender, their number) -> the last message: senders belong to one workspace,
        # so the reply and any opt-out go to that message's workspace and no other.
        link = await self.store.last_sent(sm.destination_addr, phone)
        if link is None:  # no message to answer: published to no workspace at all
            metrics.MO_MESSAGES.labels("unlinked").inc()
            self._mo_log.info("unlinked", "reply with no message from that sender to that number: not published",
                              **{"from": mask_phone(phone), "to": sm.destination_addr})
            return pdu.ESME_ROK
        address = ("+" + phone) if sm.source_addr_ton == 1 or not sm.source_addr.startswith("0") else sm.source_addr
        digest = hashlib.sha256(sm.source_addr.encode() + b"\0" + sm.destination_addr.encode()
                                + b"\0" + sm.payload + link.job.encode()).hexdigest()[:24]
        out = [events.message(K.MESSAGE_EVENT_KIND_REPLIED, link, f"mo:{digest}",
                              reply_text=text, reply_from=address, provider_message_id=link.provider_id)]
        words = text.strip().split()
        keyword = _fold(words[0].strip(".!")) if words else ""
        outcome = "replied"
        if keyword and keyword in self.cfg.opt_out_keywords:
            out.append(events.opted_out(link, address, keyword, f"mo-optout:{digest}"))
            outcome = "opted_out"
        await events.publish_many(self.publisher, out)
        metrics.MO_MESSAGES.labels(outcome).inc()
        return pdu.ESME_ROK


async def _quietly(coro: Awaitable[Any]) -> None:
    try:
        await coro
    except Exception as exc:  # the message is redelivered after ack_wait anyway
        log.warning("ack/nak failed", extra={"error": cause(exc)})

