"""Handles one jobs.email job: compose, de-dup, submit over SMTP, publish the outcome.

The handler's return acks the job (after its outcome is on the bus); a deferral raises
bus.TemporaryError so JetStream redelivers it later with exponential back-off, until
HERALD_SMTP_MAX_ATTEMPTS deliveries have been tried.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from gateways.email import dedup, links, mime, outcomes, render
from gateways.email.events import message_event, publish_message_event, stable_event_id
from gateways.email.metrics import SEND_LATENCY, SENDS
from gateways.email.smtp_pool import SmtpPool
from shared import bus, states
from shared.timeutil import from_ts

log = logging.getLogger("herald.email.worker")

K = e.MessageEventKind
F = c.FailureCategory


@dataclass(frozen=True)
class Composed:
    mail_from: str
    rcpt: str
    message_id_header: str
    data: bytes


@dataclass
class WorkerConfig:
    max_attempts: int = 5
    retry_base: float = 60.0
    retry_max: float = 3600.0
    unsubscribe_mailto: str = ""  # empty: unsubscribe@<sender's domain>
    lease: float = 150.0  # a "sending" marker younger than this belongs to a live worker


class EmailWorker:
    def __init__(self, js: JetStreamContext, markers: dedup.SendMarkers, pool: SmtpPool,
                 renderer: render.Renderer, tracker: links.Tracker, cfg: WorkerConfig) -> None:
        self.js = js
        self.markers = markers
        self.pool = pool
        self.renderer = renderer
        self.tracker = tracker
        self.cfg = cfg

    # --- composing ----------------------------------------------------------------
    def compose(self, job: e.MessageJob) -> Composed:
        """Raises mime.AddressError or render.TemplateError for jobs that can never send."""
        try:
            from_header, mail_from = mime.parse_sender(job.sender)
        except mime.AddressError as exc:
            raise SenderError(str(exc)) from exc
        rcpt = mime.check_address(job.to)
        domain = mime.domain_of(mail_from)
        message_id_header = f"<{job.message_id}@{domain}>"
        unsubscribe_url = self.tracker.unsubscribe_url(job)
        ctx = render.context_for(job.fields, email=rcpt, unsubscribe_url=unsubscribe_url,
                                 message_id=job.message_id)
        r = self.renderer.render(job.subject, job.text, job.html, ctx)
        html = r.html
        if html:
            html, _targets = links.rewrite_links(
                html, lambda i, u: self.tracker.click_url(job, i, u), skip=self.tracker.is_own)
            html = links.add_pixel(html, self.tracker.open_url(job))
        mailbox = self.cfg.unsubscribe_mailto or f"unsubscribe@{domain}"
        token = unsubscribe_url.rsplit("/", 1)[1]
        headers = [
            ("Message-ID", message_id_header),
            ("Date", mime.date_header()),
            ("From", from_header),
            ("To", rcpt),
            ("Subject", mime.encode_header(r.subject)),
            # RFC 2369 + RFC 8058 one-click: the https URL takes the POST.
            ("List-Unsubscribe", f"<{unsubscribe_url}>,\r\n <mailto:{mailbox}?subject=unsubscribe%20{token}>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ]
        return Composed(mail_from, rcpt, message_id_header,
                        mime.build(headers=headers, text=r.text, html=html))

    # --- the job ------------------------------------------------------------------
    async def handle(self, msg: Msg) -> None:
        job: e.MessageJob = bus.parse(msg, e.MessageJob)
        if not job.message_id:
            raise bus.PermanentError("job without message_id")
        delivery = max(int(msg.metadata.num_delivered or 1), 1)

        claim = await self.markers.claim(job.message_id, job.attempt)
        if not claim.claimed:
            await self._already_handled(job, claim.previous or {})
            return

        expires = from_ts(job.expires_at) if job.HasField("expires_at") else None
        if expires is not None and datetime.now(UTC) > expires:
            await self._final(job, outcomes.failed("job expired before it could be sent",
                                                   F.FAILURE_CATEGORY_EXPIRED), result="expired")
            return
        try:
            composed = self.compose(job)
        except SenderError as exc:
            await self._final(job, outcomes.failed(f"bad sender: {exc}", F.FAILURE_CATEGORY_CONFIG_ERROR))
            return
        except mime.AddressError as exc:
            await self._final(job, outcomes.failed(str(exc), F.FAILURE_CATEGORY_INVALID_ADDRESS))
            return
        except render.TemplateError as exc:
            await self._final(job, outcomes.failed(str(exc), F.FAILURE_CATEGORY_CONFIG_ERROR))
            return

        start = time.perf_counter()
        try:
            reply = await self.pool.send(composed.mail_from, composed.rcpt, composed.data)
            outcome = outcomes.submitted(composed.message_id_header, reply)
        except Exception as exc:
            outcome = outcomes.from_exception(exc)
            if outcome.kind == K.MESSAGE_EVENT_KIND_DEFERRED and not outcome.code:
                log.warning("smtp connection trouble", extra={"message_id": job.message_id,
                                                              "reason": outcome.description})
        finally:
            SEND_LATENCY.observe(time.perf_counter() - start)

        if outcome.kind == K.MESSAGE_EVENT_KIND_DEFERRED:
            if delivery < self.cfg.max_attempts:
                await self._defer(job, outcome, delivery)  # raises TemporaryError
            outcome = outcomes.exhausted(outcome, delivery)
        await self._final(job, outcome)

    def retry_delay(self, delivery: int) -> float:
        return float(min(self.cfg.retry_base * 2 ** (delivery - 1), self.cfg.retry_max))

    async def _defer(self, job: e.MessageJob, outcome: outcomes.Outcome, delivery: int) -> None:
        await self.markers.set(job.message_id, job.attempt, dedup.DEFERRED,
                               code=outcome.code, d=outcome.description)
        msg_id = f"{job.message_id}:deferred:{job.attempt}:{delivery}"
        await publish_message_event(self.js, self._event(job, outcome, msg_id), msg_id)
        SENDS.labels("deferred").inc()
        delay = self.retry_delay(delivery)
        raise bus.TemporaryError(f"deferred: {outcome.code} {outcome.description}", delay=delay)

    async def _final(self, job: e.MessageJob, outcome: outcomes.Outcome, *,
                     result: str = "", replay_of: datetime | None = None) -> None:
        """Record the outcome on the marker first, then on the bus: if publishing fails,
        the redelivered job re-publishes the recorded outcome and never re-sends.
        replay_of: re-publish an outcome recorded at that time (marker left alone)."""
        state = dedup.SUBMITTED if outcome.kind == K.MESSAGE_EVENT_KIND_SUBMITTED else dedup.FAILED
        if replay_of is None:
            await self.markers.set(job.message_id, job.attempt, state, k=outcome.kind,
                                   code=outcome.code, d=outcome.description,
                                   cat=outcome.category, p=outcome.provider_id)
        SENDS.labels(result or state).inc()
        msg_id = f"{job.message_id}:{states.kind_name(outcome.kind)}:{job.attempt}"
        await publish_message_event(self.js, self._event(job, outcome, msg_id, replay_of), msg_id)

    async def _already_handled(self, job: e.MessageJob, previous: dict) -> None:
        state = previous.get("s")
        at = datetime.fromtimestamp(float(previous.get("t", time.time())), UTC)
        if state in {dedup.SUBMITTED, dedup.FAILED}:
            outcome = outcomes.Outcome(int(previous.get("k", K.MESSAGE_EVENT_KIND_FAILED)),
                                       str(previous.get("code", "")), str(previous.get("d", "")),
                                       int(previous.get("cat", 0)), str(previous.get("p", "")))
            await self._final(job, outcome, result="duplicate", replay_of=at)
            return
        age = time.time() - float(previous.get("t", 0))
        if state == dedup.SENDING and age < self.cfg.lease:
            SENDS.labels("busy").inc()
            raise bus.TemporaryError("another worker is sending this message",
                                     delay=max(self.cfg.lease - age, 1.0))
        # A worker stopped mid-transaction: the relay may or may not have the message.
        await self._final(job, outcomes.failed(
            "send outcome unknown: a worker stopped during the SMTP transaction; "
            "retry the message to send it again", F.FAILURE_CATEGORY_UNKNOWN))

    def _event(self, job: e.MessageJob, outcome: outcomes.Outcome, msg_id: str,
               occurred_at: datetime | None = None) -> e.MessageEvent:
        return message_event(
            outcome.kind, message_id=job.message_id, campaign_id=job.campaign_id,
            workspace_id=job.workspace_id, event_id=stable_event_id(msg_id),
            occurred_at=occurred_at, error_code=outcome.code if outcome.kind != K.MESSAGE_EVENT_KIND_SUBMITTED else "",
            error_description=outcome.description if outcome.kind != K.MESSAGE_EVENT_KIND_SUBMITTED else "",
            failure_category=outcome.category, provider_message_id=outcome.provider_id,
            variant=job.variant, to=job.to, attempt=job.attempt,
        )


class SenderError(ValueError):
    """The job's From address is unusable (a campaign configuration problem)."""
