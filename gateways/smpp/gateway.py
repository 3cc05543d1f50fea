"""The SMPP gateway worker: SMS jobs from JetStream -> submit_sm; receipts -> events.

Job path (per MessageJob, many in parallel so the window fills):
  send marker SET NX (never submit a job twice) -> submit_sm -> on OK: marker ok:<id>,
  publish SUBMITTED, store the id mapping, ack. The mapping is written after the SUBMITTED
  event so a receipt can never overtake it on the bus: a receipt arriving earlier finds no
  mapping and is answered ESME_RX_T_APPN, which makes the SMSC send it again.
Receipt path: parse id and stat -> mapping -> publish DELIVERED/FAILED -> only then
  deliver_sm_resp OK.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from gateways.smpp import encoding, events, metrics, pdu, receipts, settings
from gateways.smpp.session import (
    ClientConfig,
    ConnectionLost,
    NotBound,
    ResponseTimeout,
    SmppClient,
)
from gateways.smpp.store import Mapping, Marker, Store
from shared import bus, timeutil

log = logging.getLogger("herald.smpp.gateway")

K = e.MessageEventKind
FC = c.FailureCategory

# Refusals that mean "not now": the job is redelivered later and submitted again.
TEMPORARY_STATUSES = {pdu.ESME_RTHROTTLED, pdu.ESME_RMSGQFUL, pdu.ESME_RX_T_APPN}

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


def failure_category(status: int) -> int:
    return _CATEGORY_BY_STATUS.get(status, FC.FAILURE_CATEGORY_CARRIER_REJECTED)


class JobRejected(Exception):
    """The job cannot be sent as given (address, sender, text)."""

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


@dataclass(frozen=True)
class GatewayConfig:
    subject: str = bus.SUBJECT_SMS_JOBS
    consumer: str = "smpp"
    default_sender: str = "HERALD"
    throttle_delay: float = 1.0
    mapping_ttl: int = 259200
    dedup_ttl: int = 172800
    max_parts: int = 1  # multipart arrives with issue 4; until then longer texts fail clearly
    record_retry_for: float = 20.0

    @classmethod
    def from_settings(cls) -> GatewayConfig:
        return cls(
            subject=settings.JOBS_SUBJECT.get(),
            consumer=settings.CONSUMER.get(),
            default_sender=settings.DEFAULT_SENDER.get(),
            throttle_delay=settings.THROTTLE_DELAY.get_float(),
            mapping_ttl=settings.DLR_MAPPING_TTL.get_int(),
            dedup_ttl=settings.DEDUP_TTL.get_int(),
            record_retry_for=settings.RECORD_RETRY_FOR.get_float(),
        )


class Gateway:
    def __init__(self, js: JetStreamContext, redis: aioredis.Redis, client_cfg: ClientConfig,
                 cfg: GatewayConfig | None = None) -> None:
        self.js = js
        self.cfg = cfg or GatewayConfig()
        self.client_cfg = client_cfg
        self.store = Store(redis, self.cfg.mapping_ttl, self.cfg.dedup_ttl)
        self.client = SmppClient(client_cfg, self.handle_deliver)

    # --- lifecycle ----------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Consume jobs until `stop` is set, then unbind. The current batch finishes
        first, so no submit is left in flight."""
        self.client.start()
        try:
            await bus.pull_loop(
                self.js, stream=bus.JOBS_STREAM, durable=self.cfg.consumer,
                subject=self.cfg.subject, handler=self.handle_job, stop=stop,
                batch=self.client_cfg.window, concurrent=True,
                ack_wait=max(30.0, 4 * self.client_cfg.response_timeout),
            )
        finally:
            await self.client.close()

    # --- jobs ---------------------------------------------------------------------------
    async def handle_job(self, msg: Msg) -> None:
        job: e.MessageJob = bus.parse(msg, e.MessageJob)
        if not job.message_id:
            raise bus.PermanentError("MessageJob without message_id")
        ident = Mapping(job.message_id, job.campaign_id, job.workspace_id, job.attempt,
                        smsc_id="", to=job.to, variant=job.variant)
        expires = timeutil.from_ts(job.expires_at) if job.HasField("expires_at") else None
        if expires is not None and expires.timestamp() <= time.time():
            await self._failed(ident, "EXPIRED", "job expired before it could be submitted",
                               FC.FAILURE_CATEGORY_EXPIRED)
            metrics.JOBS.labels("expired").inc()
            return
        try:
            fields = self._submit_fields(job)
        except JobRejected as exc:
            await self._failed(ident, exc.code, str(exc), exc.category)
            metrics.JOBS.labels("failed").inc()
            return

        marker = await self.store.claim(job.message_id, job.attempt)
        if marker is not None:
            await self._replay(ident, marker)
            return
        try:
            resp = await self.client.submit(**fields)
        except NotBound as exc:
            await self.store.release(job.message_id, job.attempt)
            metrics.JOBS.labels("retry").inc()
            raise bus.TemporaryError(f"not bound: {exc}", delay=self.cfg.throttle_delay) from exc
        except (ResponseTimeout, ConnectionLost) as exc:
            reason = "timeout" if isinstance(exc, ResponseTimeout) else "connection_lost"
            metrics.SUBMITS.labels(reason).inc()
            await self._record(lambda: self.store.mark(job.message_id, job.attempt, "unknown", reason))
            await self._record(lambda: self._unknown(ident, reason))
            return

        # From here on the SMSC has told us something: record it, retrying transient
        # Redis/NATS failures in place. Leaving it to a redelivery would lose the SMSC id
        # (the marker would still say pending and the job would end up "abandoned").
        mid, attempt = job.message_id, job.attempt
        status = resp.status
        metrics.SUBMITS.labels("ok" if status == pdu.ESME_ROK else pdu.status_name(status)).inc()
        if status == pdu.ESME_ROK:
            smsc_id = resp.text_field("message_id")
            await self._record(lambda: self.store.mark(mid, attempt, "ok", smsc_id))
            await self._record(lambda: self._submitted(ident, smsc_id))
            return
        if status in TEMPORARY_STATUSES:
            await self._record(lambda: self.store.release(mid, attempt))
            metrics.JOBS.labels("retry").inc()
            raise bus.TemporaryError(f"SMSC answered {pdu.status_name(status)}",
                                     delay=self.cfg.throttle_delay)
        code = pdu.status_code(status)
        await self._record(lambda: self.store.mark(mid, attempt, "failed", code))
        await self._record(lambda: self._refused(ident, status))

    async def _record(self, step: Callable[[], Awaitable[None]]) -> None:
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

    def _submit_fields(self, job: e.MessageJob) -> dict[str, Any]:
        dest, dton, dnpi = destination_address(job.to)
        src, ston, snpi = source_address(job.sender or self.cfg.default_sender)
        if not job.text:
            raise JobRejected("EMPTY_TEXT", "the SMS text is empty", FC.FAILURE_CATEGORY_CONTENT_REJECTED)
        try:
            enc = encoding.encode_text(job.text, max_parts=self.cfg.max_parts)
        except encoding.TextTooLong as exc:
            raise JobRejected("TEXT_TOO_LONG", f"{exc} (multipart sending is not enabled yet)",
                              FC.FAILURE_CATEGORY_CONTENT_REJECTED) from exc
        return dict(
            service_type="", source_addr_ton=ston, source_addr_npi=snpi, source_addr=src,
            dest_addr_ton=dton, dest_addr_npi=dnpi, destination_addr=dest,
            esm_class=enc.esm_class, protocol_id=0, priority_flag=0,
            schedule_delivery_time="", validity_period="", registered_delivery=1,
            replace_if_present_flag=0, data_coding=enc.data_coding, sm_default_msg_id=0,
            short_message=enc.parts[0],
        )

    async def _replay(self, ident: Mapping, marker: Marker) -> None:
        """A job we have seen before: re-state its outcome (same event ids), never resubmit."""
        metrics.JOBS.labels("duplicate").inc()
        if marker.state == "ok":
            await self._submitted(ident, marker.value)
        elif marker.state == "failed":
            await self._refused(ident, int(marker.value, 16))
        elif marker.state == "unknown":
            await self._unknown(ident, marker.value)
        elif marker.age() > 3 * self.client_cfg.response_timeout:
            # A worker claimed it and vanished (crash) without recording an outcome.
            await self.store.mark(ident.message_id, ident.attempt, "unknown", "abandoned")
            await self._unknown(ident, "abandoned")
        else:  # another worker is submitting it right now
            raise bus.TemporaryError("submit in progress elsewhere",
                                     delay=self.client_cfg.response_timeout)

    async def _submitted(self, ident: Mapping, smsc_id: str) -> None:
        await events.publish(
            self.js, K.MESSAGE_EVENT_KIND_SUBMITTED, ident,
            events.event_key(ident.message_id, "submitted", ident.attempt),
            provider_message_id=smsc_id, parts=1,
        )
        if smsc_id:
            m = Mapping(ident.message_id, ident.campaign_id, ident.workspace_id, ident.attempt,
                        smsc_id, ident.to, ident.variant)
            await self.store.save_mapping(m)
        else:
            log.warning("submit_sm_resp without message_id: receipts cannot be matched",
                        extra={"message_id": ident.message_id})
        metrics.JOBS.labels("submitted").inc()

    async def _failed(self, ident: Mapping, code: str, description: str, category: int) -> None:
        await events.publish(
            self.js, K.MESSAGE_EVENT_KIND_FAILED, ident,
            events.event_key(ident.message_id, "failed", ident.attempt),
            error_code=code, error_description=description, failure_category=category,
        )

    async def _refused(self, ident: Mapping, status: int) -> None:
        await self._failed(ident, pdu.status_code(status),
                           f"{pdu.status_name(status)}: {pdu.status_description(status)}",
                           failure_category(status))
        metrics.JOBS.labels("failed").inc()

    async def _unknown(self, ident: Mapping, reason: str) -> None:
        what = {"timeout": "no submit_sm_resp in time",
                "connection_lost": "the SMPP connection dropped before submit_sm_resp",
                "abandoned": "a previous worker stopped before recording the outcome"}
        await self._failed(
            ident, reason.upper(),
            f"{what.get(reason, reason)}; the SMSC may have accepted it, so it was not resubmitted",
            FC.FAILURE_CATEGORY_UNKNOWN,
        )
        metrics.JOBS.labels("failed").inc()

    # --- receipts -----------------------------------------------------------------------
    async def handle_deliver(self, frame: pdu.Frame) -> int:
        """deliver_sm -> command_status of our deliver_sm_resp."""
        try:
            body = frame.body
            tlvs = frame.tlvs
            esm_class = int(body.esm_class or 0)
            short_message = bytes(body.short_message or tlvs.get(pdu.TAG_MESSAGE_PAYLOAD, b""))
        except Exception as exc:  # unparseable: retrying cannot help
            metrics.RECEIPTS.labels("invalid").inc()
            log.error("undecodable deliver_sm dropped: %s", exc, extra={"pdu": frame.raw.hex()})
            return pdu.ESME_ROK
        if not receipts.is_receipt(esm_class, tlvs):
            metrics.MO_MESSAGES.inc()
            log.info("mobile-originated message acknowledged (MO handling is not enabled yet)",
                     extra={"source_addr": "***" + frame.text_field("source_addr")[-3:]})
            return pdu.ESME_ROK
        receipt = receipts.parse(short_message, tlvs)
        if receipt is None:
            metrics.RECEIPTS.labels("invalid").inc()
            log.error("receipt without a message id dropped", extra={"text": short_message[:200]})
            return pdu.ESME_ROK
        mapping = await self.store.lookup(receipt.message_id)
        if mapping is None:
            # Not (yet) known: the submit may still be finishing. The SMSC will resend.
            metrics.RECEIPTS.labels("unmatched").inc()
            log.debug("receipt for an unknown id, asking for a resend",
                     extra={"smsc_id": receipt.message_id, "stat": receipt.stat})
            return pdu.ESME_RX_T_APPN
        stat_label = receipt.stat if receipt.stat in receipts.KNOWN_STATS else "OTHER"
        final = receipt.final
        if final is None:  # ENROUTE, ACCEPTD, ...: nothing to record yet
            metrics.RECEIPTS.labels(stat_label).inc()
            return pdu.ESME_ROK
        kind, category = final
        key = events.event_key(mapping.message_id, "dlr", mapping.attempt)
        if kind == K.MESSAGE_EVENT_KIND_DELIVERED:
            await events.publish(self.js, kind, mapping, key, carrier_result=receipt.stat,
                                 provider_message_id=mapping.smsc_id, parts=1)
        else:
            detail = f"carrier receipt stat:{receipt.stat} err:{receipt.err or '-'}"
            if receipt.network_error:
                detail += f" network_error:{receipt.network_error}"
            await events.publish(self.js, kind, mapping, key, carrier_result=receipt.stat,
                                 provider_message_id=mapping.smsc_id, parts=1,
                                 error_code=receipt.err, error_description=detail,
                                 failure_category=category)
        metrics.RECEIPTS.labels(stat_label).inc()
        return pdu.ESME_ROK
