"""The interface a channel implements, and a job in the runtime's hands.

In the spirit of listmonk's Messenger: a channel has a name, prepares a job (CPU only: an
unsendable job gets its final outcome right away), sends a batch of prepared jobs, asking
the write gate right before each job's bytes go out, and reports each job's outcome when it
has it; it may run inbound listeners (receipts, replies, bounces) the runtime starts and
stops. Everything else (pulling, claims, recording, events, acks, drain) is the runtime's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from herald.v1 import events_pb2 as e

from gateways.core.gate import WriteGate
from gateways.core.markers import Ticket
from gateways.core.metrics import ChannelMetrics
from gateways.core.outcome import Outcome

if TYPE_CHECKING:
    from nats.aio.msg import Msg

    from shared import jsfast


@dataclass(slots=True)
class Job:
    """One delivery of a job, from fetch to ack."""

    msg: Msg | jsfast.JsMsg
    job: e.MessageJob
    delivery: int
    outcome: Outcome | None = None
    result: str = ""  # metrics label when it differs from the outcome
    replay_of: datetime | None = None  # re-publish a recorded outcome, marker untouched
    retry: float | None = None  # nak delay (deferral, busy, handed back unwritten)
    prepared: Any = None  # what the channel's prepare() made of it
    ticket: Ticket | None = None  # set while this process holds the job's claim
    event: tuple[str, bytes, str] | None = None  # its outcome event: subject, data, msg id
    reported: bool = False  # its outcome is being recorded already (streamed)
    reopen: bool = False  # handed back: its claim reopened even if its marker says written
    settled: bool = False  # acked or nak'd (the job-level in-flight cap counts it free)
    waiter: Any = None  # the reporter waiting for its streamed commit
    accepted: tuple[Outcome, str] | None = None  # an acceptance and its marker value, reused
    accepted_stored: bool = False  # that marker value is in Redis already (the write gate's)


class Report(Protocol):
    """How a channel tells the runtime about a job it was given in send()."""

    def outcome(self, job: Job, outcome: Outcome) -> None:
        """The carrier's answer (or a temporary failure: a DEFERRED outcome)."""

    def accepted(self, job: Job, outcome: Outcome) -> None:
        """The carrier took the job: its outcome rides the write gate's next Redis call, so a
        crash right after leaves no "written" marker without an outcome (best effort; the
        outcome reported afterwards is recorded anyway)."""

    def unwritten(self, job: Job) -> None:
        """Nothing of the job was written (the gate refused, not bound, throttled): it is
        handed back and sent cleanly on its next delivery."""

    def handed_back(self, job: Job, delay: float) -> None:
        """The carrier did not take the job, whatever its marker says (throttled: its answer
        says so; or the gate let it through but the connection closed before its bytes
        left): its claim is reopened (held or written by this claim), and it is sent again
        after `delay` seconds. No attempt is spent and no event published."""

    async def reported(self) -> None:
        """Until every job given to send() has its outcome or was handed back: a streaming
        channel whose answers come after its writes (a window) awaits it last in send()."""


class Listener(Protocol):
    """An inbound server of a channel (receipts, replies, bounces, tracking)."""

    async def start(self) -> Any: ...

    async def stop(self) -> None: ...


class Channel(Protocol):
    name: str  # "email": log lines, marker keys
    channel: int  # common.Channel of its outcome events
    carrier: str  # who may hold an ABANDONED job: "relay", "SMSC"
    metrics: ChannelMetrics
    # True: each reported outcome is recorded at once (group-committed with whatever else
    # arrived meanwhile: windowed protocols); False: the batch's outcomes together once
    # send() returns (one Redis call and one publish per batch).
    streams_outcomes: bool

    def batch_limit(self) -> int | None:
        """At most this many jobs per fetch (e.g. under a rate limit), None = the config's."""

    def ref(self, job: e.MessageJob) -> str | None:
        """JSON stored with the job's first claim for inbound listeners (None: nothing)."""

    def prepare(self, job: e.MessageJob) -> Any:
        """The job ready to send, or an Outcome if it can never be sent (CPU only)."""

    async def send(self, jobs: list[Job], gate: WriteGate, report: Report) -> None:
        """Send prepared jobs; every job ends reported (outcome or unwritten) or, if send
        raises or returns without a word about it, is handed back as never written."""

    def exhausted(self, last: Outcome, deliveries: int) -> Outcome:
        """The final failure of a job still deferred after its last allowed delivery."""

    def abandon_meaning(self, reason: str) -> str:
        """Why a job's send is unknowable, per reason (worker_stopped, redis_lost,
        corrupt_marker), in the channel's words."""

    def listeners(self) -> Sequence[Listener]:
        """Inbound servers the runtime starts before pulling and stops after the drain."""


class ChannelHooks(Protocol):
    """What a channel may add (each member optional: hooks.Hooks fills in the runtime's
    default for a channel without it)."""

    # The log line of ABANDONED jobs (default "<name> jobs abandoned").
    abandon_event: str
    # The runtime's logger (default "herald.<name>.worker").
    logger: str

    def event_id(self, msg_id: str) -> str:
        """The event_id of an outcome event, from its Nats-Msg-Id (a channel whose events
        had ids of their own before keeps them: re-published facts keep their ids)."""

    def expired(self, job: e.MessageJob) -> Outcome:
        """The outcome of a job that expired before it could be sent."""

    def abandoned(self, job: e.MessageJob, reason: str) -> Outcome:
        """The outcome of an ABANDONED job (judge.REASONS), in the channel's words."""

    async def record(self, jobs: Sequence[Job]) -> None:
        """The channel's own Redis writes for these jobs' outcomes (e.g. a carrier's ids ->
        message), after their events are stored and before their acks; retried with the
        rest of the group commit."""

    def recorded(self, jobs: Sequence[Job], stored: bool) -> None:
        """These jobs' group commit ended (stored: their outcomes are recorded; else they
        were handed back): e.g. receipts that waited for them go on."""
