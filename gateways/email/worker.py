"""The email sender: jobs.email on the channel runtime (gateways.core.runtime) with the
email channel (channel.py). WorkerConfig gathers both sides' settings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from herald.v1 import events_pb2 as e
from nats.js import JetStreamContext

from gateways.core import events as core_events
from gateways.core.markers import SendMarkers
from gateways.core.outcome import Outcome
from gateways.core.ratelog import RateLimitedLog
from gateways.core.recorder import RetryPolicy
from gateways.core.runtime import Runtime, RuntimeConfig
from gateways.email.channel import EmailChannel, EmailOptions, ref_json
from gateways.email.dkimsign import DkimSigner
from gateways.email.skeleton import Composed, SenderError, Skeletons
from gateways.email.smtp_pool import SmtpPool
from shared import bus

DURABLE = "email"

__all__ = ["Composed", "EmailWorker", "RateLimitedLog", "SenderError", "WorkerConfig",
           "ref_json"]


@dataclass
class WorkerConfig:
    max_attempts: int = 5
    retry_base: float = 60.0
    retry_max: float = 3600.0
    unsubscribe_mailto: str = ""  # empty: unsubscribe@<sender's domain>
    lease: float = 150.0  # a claim or "written" marker younger than this may belong to a live worker
    verp: bool = True
    verp_domain: str = ""  # empty: the sender's domain
    batch: int = 128
    batches_in_flight: int = 3
    consumer: str = "jsfast"  # or "nats": nats-py's pull_subscribe/fetch
    route: str = ""  # the relay's name on outcome events; "" = its host:port
    ack_wait: float = 30.0  # of the durable consumer, when this worker creates it

    def runtime(self) -> RuntimeConfig:
        return RuntimeConfig(
            durable=DURABLE, subject=bus.SUBJECT_EMAIL_JOBS, lease=self.lease, batch=self.batch,
            batches_in_flight=self.batches_in_flight, consumer=self.consumer,
            ack_wait=self.ack_wait,
            policy=RetryPolicy(self.max_attempts, self.retry_base, self.retry_max))

    def options(self) -> EmailOptions:
        return EmailOptions(self.unsubscribe_mailto, self.verp, self.verp_domain, self.route)


class EmailWorker(Runtime):
    """The runtime running the email channel (what `python -m gateways.email.sender` runs)."""

    channel: EmailChannel

    def __init__(self, js: JetStreamContext, markers: SendMarkers, pool: SmtpPool,
                 skeletons: Skeletons, cfg: WorkerConfig, dkim: DkimSigner | None = None,
                 dkim_domain: str = "") -> None:
        super().__init__(js, markers, EmailChannel(pool, skeletons, cfg.options(), dkim,
                                                   dkim_domain), cfg.runtime())
        self.pool = pool

    # what tools and benchmarks reach for
    def compose(self, job: e.MessageJob) -> Composed:
        return self.channel.compose(job)

    @property
    def dkim(self) -> DkimSigner | None:
        return self.channel.dkim

    @dkim.setter
    def dkim(self, value: DkimSigner | None) -> None:
        self.channel.dkim = value

    @property
    def dkim_by_domain(self) -> dict[str, DkimSigner]:
        """Per-From-domain copies of the DKIM signer (d= follows the From domain)."""
        return self.channel.dkim_by_domain

    def event(self, job: e.MessageJob, outcome: Outcome, msg_id: str,
               occurred_at: datetime | None = None) -> Any:
        return core_events.outcome_event(self.channel.channel, job, outcome, msg_id, occurred_at)
