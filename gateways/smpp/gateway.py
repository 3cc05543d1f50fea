"""The SMPP gateway worker: SMS jobs from JetStream -> submit_sm on a route's binds;
receipts and replies -> events.

Job path (many jobs in flight so every window fills):
  send marker SET NX (never submit a job twice) -> submit_sm per part, in order, on one
  bind -> marker ok:<route>|<ids> -> publish SUBMITTED -> store the id mappings -> ack.
  Mappings are written after SUBMITTED so a receipt's event can never overtake it on the
  bus: a receipt arriving earlier finds no mapping, is looked up again a moment later and
  otherwise answered ESME_RX_T_APPN, which makes the SMSC send it again.
  The Redis and NATS steps are batched across jobs (store.Batcher: one pipeline and one
  burst of async publishes per batch) but keep that order for every job.
Refusals: ESME_RTHROTTLED / ESME_RMSGQFUL pause and slow the bind and nak the job with a
  delay (later parts of a multipart message are retried in place instead: earlier parts
  are out); ESME_RSYSERR is retried in place with exponential backoff up to a limit;
  anything else is FAILED with the SMPP code, its description and a failure category.
  No response (timeout, connection lost): FAILED as unknown, never resubmitted.
Receipt path: parse (TLVs + Appendix B) -> mapping by the route's id format -> per-part
  state -> publish DELIVERED (every part delivered) / FAILED (any part failed) -> only then
  deliver_sm_resp OK. Replies: events.message.replied linked to the last message sent to
  that number from that sender; opt-out keywords -> events.contact.opted_out too.
No final receipt after HERALD_SMPP_ASSUMED_DELIVERED_AFTER: ASSUMED_DELIVERED (a later
  receipt still wins: it ranks higher).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig

from gateways.smpp import encoding, events, metrics, pdu, receipts, settings
from gateways.smpp.routes import IdFormat, RouteConfig, choose
from gateways.smpp.session import (
    ClientConfig,
    ConnectionLost,
    NotBound,
    ResponseTimeout,
    SmppClient,
)
from gateways.smpp.store import Batcher, Mapping, Marker, Store, id_key
from shared import bus

log = logging.getLogger("herald.smpp.gateway")

K = e.MessageEventKind
FC = c.FailureCategory

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
UNMATCHED_RECHECKS = (0.05, 0.2, 0.5)  # local re-lookups before asking the SMSC to resend


def failure_category(status: int) -> int:
    return _CATEGORY_BY_STATUS.get(status, FC.FAILURE_CATEGORY_CARRIER_REJECTED)


class JobRejected(Exception):
    """The job cannot be sent as given (address, sender, text, route)."""

    def __init__(self, code: str, description: str, category: int) -> None:
        super().__init__(description)
        self.code = code
        self.category = category


def destination_address(to: str) -> tuple[str, int, int]:
    """E.164 '+447700900123' -> ('447700900123', TON international, NPI ISDN)."""
    s = "".join(ch for ch in to.strip() if ch not in " -().")
    ton = 1
    if s.startswith("+"):
        s = s[1:]
    elif s.startswith("00"):
        s = s[2:]
    else:
        ton = 0  # unknown: let the SMSC interpret it
    if not s.isdigit() or not 3 <= len(s) <= 20:
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
    assumed_delivered_after: float = 172800.0
    opt_out_keywords: tuple[str, ...] = ("STOP", "STOPALL", "UNSUBSCRIBE", "ARRET")
    mo_link_ttl: int = 604800
    max_in_flight: int = 0

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
            assumed_delivered_after=settings.ASSUMED_DELIVERED_AFTER.get_float(),
            opt_out_keywords=tuple(_fold(w.strip()) for w in settings.OPT_OUT_KEYWORDS.get().split(",")
                                   if w.strip()),
            mo_link_ttl=settings.MO_LINK_TTL.get_int(),
            max_in_flight=settings.MAX_IN_FLIGHT.get_int(),
        )


class Route:
    """A configured route and its running binds."""

    def __init__(self, cfg: RouteConfig, sink: Callable[[RouteConfig], Any]) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.id_format: IdFormat = cfg.id_format
        self.clients = [SmppClient(cfg.client, sink(cfg)) for _ in range(cfg.binds)]
        self._rr = 0

    def start(self) -> None:
        for cl in self.clients:
            cl.start()

    async def pick(self) -> SmppClient:
        """The bound bind with the most free window slots (round robin among equals)."""
        best: SmppClient | None = None
        n = len(self.clients)
        self._rr = (self._rr + 1) % n
        for i in range(n):
            cl = self.clients[(self._rr + i) % n]
            if cl.bound.is_set() and (best is None or cl.free > best.free):
                best = cl
        if best is not None:
            return best
        waits = [asyncio.create_task(cl.bound.wait()) for cl in self.clients]
        done, pending = await asyncio.wait(waits, timeout=self.cfg.client.response_timeout,
                                           return_when=asyncio.FIRST_COMPLETED)
        for w in pending:
            w.cancel()
        for cl in self.clients:
            if cl.bound.is_set():
                return cl
        raise NotBound(f"route {self.name}: no bound SMPP session")

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
    """What to record for one job once the SMSC has answered (see Gateway._record_many)."""

    ident: Mapping
    marker: tuple[str, str]
    event: events.Outgoing | None
    parts: list[tuple[Mapping, list[str]]] = field(default_factory=list)
    await_until: float | None = None


@dataclass
class _Receipt:
    route: Route
    receipt: receipts.Receipt
    reply: Callable[[int], None]
    tries: int = 0


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
        self.routes = {r.name: Route(r, self._sink_for) for r in routes}
        self.recorder: Batcher[Outcome, None] = Batcher(self._record_many)
        self.receipts: Batcher[_Receipt, None] = Batcher(self._receipts_many)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._response_timeout = max(r.client.response_timeout for r in routes)
        windows = sum(r.client.window * r.binds for r in routes)
        # More jobs than window slots: while the windows are full, other jobs are being
        # claimed or recorded (their Redis/NATS batches), so the windows stay full.
        self.max_in_flight = self.cfg.max_in_flight or max(64, 2 * windows)
        # Metric children of the per-message path, looked up once.
        self._acked = bus.BUS_MESSAGES.labels(self.cfg.consumer, "ack")
        self._submits_ok = metrics.SUBMITS.labels("ok")
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
        for r in self.routes.values():
            r.start()
        sweeper = asyncio.create_task(self._assumed_loop(stop))
        try:
            await self._pull(stop)
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await asyncio.gather(*(r.close() for r in self.routes.values()))

    async def _pull(self, stop: asyncio.Event) -> None:
        ack_wait = max(30.0, 4 * self._response_timeout)
        cfg = ConsumerConfig(durable_name=self.cfg.consumer, filter_subject=self.cfg.subject,
                             ack_wait=ack_wait, max_ack_pending=max(10000, 2 * self.max_in_flight))
        sub = await self.js.pull_subscribe(self.cfg.subject, durable=self.cfg.consumer,
                                           stream=bus.JOBS_STREAM, config=cfg)
        inflight: set[asyncio.Task[None]] = set()
        cap = self.max_in_flight
        low = max(1, cap // 4)
        try:
            while not stop.is_set():
                free = cap - len(inflight)
                if free < low:
                    await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                try:
                    msgs = await sub.fetch(min(free, 1000), timeout=0.5)
                except (NatsTimeout, TimeoutError):
                    continue
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # connection trouble: the client reconnects by itself
                    log.warning("fetch failed: %s", exc)
                    await asyncio.sleep(0.5)
                    continue
                for m in msgs:
                    t = asyncio.create_task(self._handle_msg(m))
                    inflight.add(t)
                    t.add_done_callback(inflight.discard)
        finally:
            if inflight:
                await asyncio.wait(inflight)
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _handle_msg(self, msg: Msg) -> None:
        durable = self.cfg.consumer
        try:
            await self.handle_job(msg)
        except bus.TemporaryError as exc:
            bus.BUS_MESSAGES.labels(durable, "nak").inc()
            log.debug("temporary failure, redelivering", extra={"reason": str(exc)})
            await _quietly(msg.nak(delay=exc.delay))
            return
        except bus.PermanentError as exc:
            bus.BUS_MESSAGES.labels(durable, "term").inc()
            log.error("dropping unprocessable job", extra={"reason": str(exc)})
            await _quietly(msg.term())
            return
        except Exception:
            bus.BUS_MESSAGES.labels(durable, "nak").inc()
            log.exception("job handler failed, redelivering")
            await _quietly(msg.nak(delay=1.0))
            return
        self._acked.inc()
        await _quietly(msg.ack())

    # --- jobs ---------------------------------------------------------------------------
    async def handle_job(self, msg: Msg) -> None:
        job: e.MessageJob = bus.parse(msg, e.MessageJob)
        if not job.message_id:
            raise bus.PermanentError("MessageJob without message_id")
        if job.HasField("expires_at") and job.expires_at.seconds <= time.time():
            await self._failed_now(self._bare_ident(job), "EXPIRED", "job expired before it could be submitted",
                                   FC.FAILURE_CATEGORY_EXPIRED)
            metrics.JOBS.labels("expired").inc()
            return
        try:
            route, sender, parts, build = self._prepare(job)
        except JobRejected as exc:
            await self._failed_now(self._bare_ident(job), exc.code, str(exc), exc.category)
            metrics.JOBS.labels("failed").inc()
            return
        ident = Mapping(job.message_id, job.campaign_id, job.workspace_id, job.attempt, "",
                        job.to, job.variant, parts=len(parts), route=route.name, sender=sender)

        marker = await self.store.claim(job.message_id, job.attempt)
        if marker is not None:
            await self._replay(ident, marker)
            return

        mid, attempt = job.message_id, job.attempt
        ids: list[str] = []
        try:
            client = await route.pick()
        except NotBound as exc:
            await self._record(lambda: self.store.release(mid, attempt))
            metrics.JOBS.labels("retry").inc()
            raise bus.TemporaryError(str(exc), delay=self.cfg.throttle_delay) from exc
        for index, part in enumerate(parts):
            retries = 0
            while True:
                try:
                    resp = await client.submit_pdu(build(part))
                except NotBound as exc:
                    if not ids:  # nothing went out: a redelivery may submit it all
                        await self._record(lambda: self.store.release(mid, attempt))
                        metrics.JOBS.labels("retry").inc()
                        raise bus.TemporaryError(f"not bound: {exc}", delay=self.cfg.throttle_delay) from exc
                    resp = None
                    reason = "connection_lost"
                except (ResponseTimeout, ConnectionLost) as exc:
                    resp = None
                    reason = "timeout" if isinstance(exc, ResponseTimeout) else "connection_lost"
                if resp is None:
                    metrics.SUBMITS.labels(reason).inc()
                    await self._record_outcome(self._unknown(ident, reason, ids))
                    return
                status = resp.status
                if status == pdu.ESME_ROK:
                    self._submits_ok.inc()
                else:
                    metrics.SUBMITS.labels(pdu.status_name(status)).inc()
                if status == pdu.ESME_ROK:
                    ids.append(pdu.resp_message_id(resp.raw))
                    break
                if status in THROTTLE_STATUSES:
                    client.throttled(self.cfg.throttle_delay)
                    if index == 0:
                        await self._record(lambda: self.store.release(mid, attempt))
                        metrics.JOBS.labels("retry").inc()
                        raise bus.TemporaryError(f"SMSC answered {pdu.status_name(status)}",
                                                 delay=self.cfg.throttle_delay)
                    await asyncio.sleep(self.cfg.throttle_delay)  # earlier parts are out: retry this one
                    continue
                if status in RETRY_STATUSES and retries < self.cfg.syserr_retries:
                    await asyncio.sleep(self.cfg.throttle_delay * 2 ** retries / 4)
                    retries += 1
                    continue
                await self._record_outcome(self._refused(ident, status, ids))
                return
        await self._record_outcome(self._accepted(ident, route, ids))

    @staticmethod
    def _bare_ident(job: e.MessageJob) -> Mapping:
        return Mapping(job.message_id, job.campaign_id, job.workspace_id, job.attempt,
                       smsc_id="", to=job.to, variant=job.variant)

    def _prepare(self, job: e.MessageJob) -> tuple[Route, str, list[bytes], Callable[[bytes], Callable[[int], bytes]]]:
        dest, dton, dnpi = destination_address(job.to)
        sender_raw = job.sender or self.cfg.default_sender
        src, ston, snpi = source_address(sender_raw)
        if not job.text:
            raise JobRejected("EMPTY_TEXT", "the SMS text is empty", FC.FAILURE_CATEGORY_CONTENT_REJECTED)
        rc = choose(self.route_cfgs, sender_raw, job.to)
        if rc is None:
            raise JobRejected("NO_ROUTE", f"no SMPP route for sender {sender_raw!r} to {job.to[:4]}...",
                              FC.FAILURE_CATEGORY_CONFIG_ERROR)
        try:
            enc = encoding.encode_text(job.text, max_parts=self.cfg.max_parts, udh16=self.cfg.udh16)
        except encoding.TextTooLong as exc:
            raise JobRejected("TEXT_TOO_LONG", str(exc), FC.FAILURE_CATEGORY_CONTENT_REJECTED) from exc
        esm_class, data_coding = enc.esm_class, enc.data_coding

        def build(part: bytes) -> Callable[[int], bytes]:
            return lambda seq: pdu.encode_submit_sm(
                seq, source_addr=src, source_addr_ton=ston, source_addr_npi=snpi,
                destination_addr=dest, dest_addr_ton=dton, dest_addr_npi=dnpi,
                esm_class=esm_class, registered_delivery=1, data_coding=data_coding,
                short_message=part)

        return self.routes[rc.name], src, enc.parts, build

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
        after = self.cfg.assumed_delivered_after
        return Outcome(
            first, ("ok", f"{route.name}|{','.join(ids)}"),
            events.message(K.MESSAGE_EVENT_KIND_SUBMITTED, first,
                           events.event_key(ident.message_id, "submitted", ident.attempt),
                           provider_message_id=ids[0], parts=len(ids)),
            parts, now + after if after > 0 and parts else None,
        )

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
        metrics.JOBS.labels("failed").inc()
        what = {"timeout": "no submit_sm_resp in time",
                "connection_lost": "the SMPP connection dropped before submit_sm_resp",
                "abandoned": "a previous worker stopped before recording the outcome"}
        desc = f"{what.get(reason, reason)}; the SMSC may have accepted it, so it was not resubmitted"
        return Outcome(ident, ("unknown", reason),
                       self._failed_event(ident, reason.upper(), desc, FC.FAILURE_CATEGORY_UNKNOWN, ids))

    async def _failed_now(self, ident: Mapping, code: str, description: str, category: int) -> None:
        await self._record(lambda: events.publish_many(
            self.js, [self._failed_event(ident, code, description, category)]))

    async def _record_outcome(self, outcome: Outcome) -> None:
        # Retried in place on Redis/NATS trouble: leaving it to a redelivery would lose the
        # SMSC ids (the marker would still say pending and the job would end as abandoned).
        await self._record(lambda: self.recorder.submit(outcome))
        if outcome.marker[0] == "ok":
            self._jobs_submitted.inc()

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
                log.warning("recording a submit outcome failed, retrying: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _record_many(self, outcomes: list[Outcome]) -> list[None]:
        """Markers (one script call) -> events (acks awaited together) -> mappings (one script call)."""
        w = self.store.writes()
        for o in outcomes:
            self.store.add_mark(w, o.ident.message_id, o.ident.attempt, *o.marker)
        await self.store.apply(w)
        await events.publish_many(self.js, [o.event for o in outcomes if o.event is not None])
        w = self.store.writes()
        for o in outcomes:
            if o.parts:
                self.store.add_mappings(w, o.parts, o.await_until)
        await self.store.apply(w)
        return [None] * len(outcomes)

    async def _replay(self, ident: Mapping, marker: Marker) -> None:
        """A job seen before: re-state its outcome (same event ids), never resubmit."""
        metrics.JOBS.labels("duplicate").inc()
        if marker.state == "ok":
            route_name, ids = marker.route_and_ids
            route = self.routes.get(route_name) or self.routes[ident.route]
            outcome = self._accepted(ident, route, ids)
            await self._record(lambda: self.recorder.submit(outcome))
        elif marker.state == "failed":
            try:
                status = int(marker.value, 16)
            except ValueError:
                status = pdu.ESME_RSYSERR
            await self._record(lambda: self.recorder.submit(self._refused(ident, status, [])))
        elif marker.state == "unknown":
            await self._record(lambda: self.recorder.submit(self._unknown(ident, marker.value, [])))
        elif marker.age() > 3 * self._response_timeout + 5:
            # A worker claimed it and vanished (crash) without recording an outcome.
            await self._record(lambda: self.recorder.submit(self._unknown(ident, "abandoned", [])))
        else:  # another worker is submitting it right now
            raise bus.TemporaryError("submit in progress elsewhere", delay=self._response_timeout)

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
        item = _Receipt(route, receipt, reply)
        self._queue_receipt(item)

    def _queue_receipt(self, item: _Receipt) -> None:
        fut = self.receipts.submit(item)

        def done(f: asyncio.Future[None]) -> None:
            if f.cancelled() or f.exception() is not None:
                if not f.cancelled():
                    log.warning("receipt batch failed, asking the SMSC to resend: %s", f.exception())
                item.reply(pdu.ESME_RX_T_APPN)
        fut.add_done_callback(done)

    async def _receipts_many(self, items: list[_Receipt]) -> list[None]:
        raws = await self.store.redis.mget(
            [id_key(it.route.name, it.route.id_format.lookup_key(it.receipt.message_id)) for it in items])
        found: list[tuple[_Receipt, Mapping]] = []
        for it, raw in zip(items, raws, strict=True):
            if raw is None:
                self._unmatched(it)
            else:
                found.append((it, Mapping.loads(raw)))
        multipart = [(m, it.receipt.stat) for it, m in found
                     if m.parts > 1 and it.receipt.final is not None]
        part_states = iter(await self.store.record_parts(multipart) if multipart else [])
        out: list[events.Outgoing] = []
        replies: list[_Receipt] = []
        settled: list[str] = []
        now = time.time()
        for it, m in found:
            r = it.receipt
            counters = self._receipt_counters
            (counters.get(r.stat) or counters["OTHER"]).inc()
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
            settled.append(m.job)
        await events.publish_many(self.js, out)
        for it in replies:
            it.reply(pdu.ESME_ROK)
        await self.store.settled(settled)
        return [None] * len(items)

    def _unmatched(self, it: _Receipt) -> None:
        """No mapping (yet): the submit may still be being recorded. Look again a few times
        before asking the SMSC to resend (ESME_RX_T_APPN); never drop it."""
        if it.tries < len(UNMATCHED_RECHECKS):
            delay = UNMATCHED_RECHECKS[it.tries]
            it.tries += 1
            asyncio.get_running_loop().call_later(delay, self._queue_receipt, it)
            return
        metrics.RECEIPTS.labels("unmatched").inc()
        log.debug("receipt for an unknown id, asking for a resend",
                  extra={"smsc_id": it.receipt.message_id, "stat": it.receipt.stat})
        it.reply(pdu.ESME_RX_T_APPN)

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
        link = await self.store.last_sent(sm.destination_addr, phone)
        if link is None:
            metrics.MO_MESSAGES.labels("unlinked").inc()
            log.info("reply with no message to link it to",
                     extra={"from": "***" + phone[-3:], "to": sm.destination_addr})
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
        await events.publish_many(self.js, out)
        metrics.MO_MESSAGES.labels(outcome).inc()
        return pdu.ESME_ROK

    # --- assumed delivery ---------------------------------------------------------------
    async def _assumed_loop(self, stop: asyncio.Event) -> None:
        after = self.cfg.assumed_delivered_after
        if after <= 0:
            return
        period = min(5.0, max(0.05, after / 10))
        while not stop.is_set():
            await asyncio.sleep(period)
            try:
                await self.sweep_assumed()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("assumed-delivery sweep failed: %s", exc)

    async def sweep_assumed(self, now: float | None = None) -> int:
        due = await self.store.due(time.time() if now is None else now)
        if not due:
            return 0
        await events.publish_many(self.js, [
            events.message(K.MESSAGE_EVENT_KIND_ASSUMED_DELIVERED, m,
                           events.event_key(m.message_id, "assumed", m.attempt),
                           provider_message_id=m.provider_id, parts=m.parts)
            for m in due])
        metrics.ASSUMED_DELIVERED.inc(len(due))
        await self.store.settled([m.job for m in due])
        return len(due)


async def _quietly(coro: Awaitable[Any]) -> None:
    try:
        await coro
    except Exception as exc:  # the message is redelivered after ack_wait anyway
        log.warning("ack/nak failed: %s", exc)

