"""Email as a channel of the runtime (gateways.core): a job becomes a composed mail (prepared
skeletons, DKIM, VERP, tracked links), batches go over the pipelining SMTP pool, each mail's
end of DATA waits for the write gate, and the relay's answer is reported per mail (a 250 also
rides the gate's next Redis call)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from gateways.core.channel import Job, Listener, Report
from gateways.core.gate import WriteGate
from gateways.core.outcome import Outcome
from gateways.email import links, mime, outcomes, render, tokens
from gateways.email.dedup import json_str as _js
from gateways.email.dkimsign import DkimSigner
from gateways.email.metrics import RUNTIME
from gateways.email.skeleton import Composed, SenderError, Skeletons
from gateways.email.smtp_pool import NotCommitted, QueuedMail, SmtpPool

log = logging.getLogger("herald.email.worker")

K = e  # top-level enum constants: e.MessageEventKind.X costs ~3 µs per lookup
F = c.FailureCategory


@dataclass
class EmailOptions:
    unsubscribe_mailto: str = ""  # empty: unsubscribe@<sender's domain>
    verp: bool = True
    verp_domain: str = ""  # empty: the sender's domain
    route: str = ""  # the relay's name on outcome events; "" = its host:port


def ref_json(job: e.MessageJob) -> str:
    """dedup.flat_json({"to": to, "c": campaign, "w": workspace, "ct": contact, "v": variant})."""
    return (f'{{"to":{_js(job.to)},"c":{_js(job.campaign_id)},"w":{_js(job.workspace_id)},'
            f'"ct":{_js(job.contact_id)},"v":{_js(job.variant)}}}')


class EmailChannel:
    name = "email"
    channel = c.CHANNEL_EMAIL
    carrier = "relay"
    metrics = RUNTIME
    streams_outcomes = False  # a batch's mails finish together: one record per batch

    def __init__(self, pool: SmtpPool, skeletons: Skeletons, opts: EmailOptions,
                 dkim: DkimSigner | None = None, dkim_domain: str = "") -> None:
        self.pool = pool
        self.skeletons = skeletons
        self.signer = skeletons.signer
        self.tracker = links.Tracker(skeletons.signer, skeletons.base_url)
        self.opts = opts
        # MessageEvent.route of every outcome that went to the relay (the ledger's route)
        self.route = opts.route or f"{pool.cfg.host}:{pool.cfg.port}"
        self.dkim = dkim
        self.dkim_domain = dkim_domain
        self.dkim_by_domain: dict[str, DkimSigner] = {}

    # --- composing ----------------------------------------------------------------
    def _dkim_for(self, domain: str) -> DkimSigner | None:
        if self.dkim is None or self.dkim_domain:
            return self.dkim
        signer = self.dkim_by_domain.get(domain)
        if signer is None or signer.key is not self.dkim.key:  # d= follows the From domain
            signer = DkimSigner.__new__(DkimSigner)
            signer.__dict__.update(self.dkim.__dict__, domain=domain)
            self.dkim_by_domain[domain] = signer
        return signer

    def return_path(self, job: e.MessageJob, sender: str) -> str:
        if not self.opts.verp:
            return sender
        domain = self.opts.verp_domain or mime.domain_of(sender)
        return f"{tokens.verp_local(self.signer, job.message_id, job.attempt)}@{domain}"

    def compose(self, job: e.MessageJob) -> Composed:
        """Raises SenderError, mime.AddressError or render.TemplateError for jobs that can
        never send."""
        sk = self.skeletons.get(job)
        rcpt = mime.check_address(job.to)
        return sk.compose(job, rcpt, self.return_path(job, sk.sender), self._dkim_for(sk.domain),
                          lambda i, u: self.tracker.click_url(job, i, u))

    # --- the runtime's interface ---------------------------------------------------
    def batch_limit(self) -> int | None:
        if self.pool.cfg.rate > 0:  # a rate-limited batch must finish well within ack_wait
            return max(1, int(self.pool.cfg.rate * 5))
        return None

    def ref(self, job: e.MessageJob) -> str:
        # the ref as dedup.flat_json({"to", "c", "w", "ct", "v"}) would write it, joined
        # here without the dict (tests check it equals flat_json)
        return ref_json(job)

    def prepare(self, job: e.MessageJob) -> Composed | Outcome:
        try:
            return self.compose(job)
        except SenderError as exc:
            return outcomes.failed(f"bad sender: {exc}", F.FAILURE_CATEGORY_CONFIG_ERROR)
        except mime.AddressError as exc:
            return outcomes.failed(str(exc), F.FAILURE_CATEGORY_INVALID_ADDRESS)
        except render.TemplateError as exc:  # the content itself cannot be rendered
            return outcomes.failed(str(exc), F.FAILURE_CATEGORY_CONTENT_REJECTED)

    async def send(self, jobs: list[Job], gate: WriteGate, report: Report) -> None:
        mails = []
        by_mail: dict[int, Job] = {}
        # The outcome of each 250, reported again as the mail's outcome: the same object
        # tells the recorder the write gate's marker of it is the final one (not written
        # again once the gate's call stored it).
        took: dict[int, Outcome] = {}
        for it in jobs:
            comp: Composed = it.prepared
            mail = QueuedMail(comp.mail_from, comp.rcpt, comp.data, comp.dot_free, it.ticket)
            mails.append(mail)
            by_mail[id(mail)] = it

        def accepted(mail: QueuedMail) -> None:  # the relay's 250, recorded at once
            it = by_mail[id(mail)]
            o = took[id(mail)] = outcomes.submitted(
                it.prepared.message_id_header, str(mail.result), self.route)
            report.accepted(it, o)

        try:
            await self.pool.send_many(mails, gate.commit, accepted)
        finally:
            latency = RUNTIME.latency
            for it, mail in zip(jobs, mails, strict=True):
                if mail.result is None:  # cancelled before its turn: never sent
                    continue
                latency.observe(mail.took)
                if isinstance(mail.result, str):
                    o = took.get(id(mail))
                    report.outcome(it, o if o is not None else outcomes.submitted(
                        it.prepared.message_id_header, mail.result, self.route))
                    continue
                if isinstance(mail.result, NotCommitted):
                    report.unwritten(it)  # nothing of it was written
                    continue
                o = dataclasses.replace(outcomes.from_exception(mail.result), route=self.route)
                if o.kind == K.MESSAGE_EVENT_KIND_DEFERRED and not o.code:
                    log.warning("smtp connection trouble", extra={
                        "message_id": it.job.message_id, "reason": o.description})
                report.outcome(it, o)

    def exhausted(self, last: Outcome, deliveries: int) -> Outcome:
        return outcomes.exhausted(last, deliveries)

    def abandon_meaning(self, reason: str) -> str:
        return outcomes.ABANDON_REASONS[reason]

    def listeners(self) -> Sequence[Listener]:
        return ()  # tracking and bounces are roles of their own (see roles.py)
