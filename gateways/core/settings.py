"""Runtime settings every channel has (batch, ack wait, marker TTL, retries, in-flight cap,
liveness), declared here once with one description each. A channel names its variables
(names kept across versions: operators have them in their manifests) and its defaults;
`declare` registers them in shared.config under the channel's scope."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from shared.config import Setting, setting

if TYPE_CHECKING:
    from gateways.core.recorder import RetryPolicy

# What each common setting means; {carrier} is the channel's carrier ("relay", "SMSC").
DOCS: dict[str, str] = {
    "batch": "Jobs fetched from JetStream per batch; each batch is claimed in Redis with one call.",
    "durable": "Durable pull consumer name on the JOBS stream (every gateway replica shares it).",
    "subject": "JOBS subject the gateway consumes MessageJobs from.",
    "ack_wait": (
        "Seconds JetStream waits for a job's ack before delivering it again (to this or another "
        "replica); set when the gateway creates its durable consumer (an existing consumer keeps "
        "its value). A redelivered job never goes out twice: it finds its send marker."),
    "marker_ttl": (
        "Seconds a job's send marker (<message_id>:<attempt>: held, written, outcome) is kept in "
        "Redis: a redelivery within it never sends twice what the {carrier} was given."),
    "max_attempts": (
        "Deliveries of a job the {carrier} deferred (temporary refusal, connection error) before "
        "the message is FAILED."),
    "retry_base": "Seconds before the first redelivery of a deferred job; doubles per delivery.",
    "retry_max": "Longest wait in seconds between two redeliveries of a deferred job.",
    "in_flight": "Jobs the gateway works on at once, from fetch to ack.",
    "holder_ttl": (
        "Seconds a gateway process's liveness key outlives its last renewal (renewed every third "
        "of it). Jobs whose send marker is held by a process whose key is gone are taken over and "
        "sent; jobs it had written to the {carrier} without recording an outcome become "
        "ABANDONED. Keep it well under the jobs' ack wait (30 s or more)."),
    "record_retry_for": (
        "Seconds the gateway keeps retrying (Redis/NATS trouble) to record an outcome the "
        "{carrier} has already given, before leaving the job to redelivery (where it becomes "
        "ABANDONED: the {carrier} has it, Herald lost its answer). Keep it above the longest "
        "Redis or NATS outage to ride out (a 30 s outage needs more than 30 s)."),
}


class RuntimeSettings(dict[str, Setting]):
    """The common settings one channel declares, by key of DOCS."""

    def retry_policy(self) -> RetryPolicy:
        """The deferral back-off read from the max_attempts/retry_base/retry_max settings."""
        from gateways.core.recorder import RetryPolicy  # settings modules stay light to import

        return RetryPolicy(self["max_attempts"].get_int(), self["retry_base"].get_float(),
                           self["retry_max"].get_float())


def declare(scope: str, carrier: str, names: Mapping[str, tuple[str, str]],
            notes: Mapping[str, str] | None = None) -> RuntimeSettings:
    """names: common setting -> (variable name, default); notes: what a channel adds to a
    setting's description (e.g. how its own limits lower it)."""
    notes = notes or {}
    made = RuntimeSettings()
    for key, (name, default) in names.items():
        doc = DOCS[key].format(carrier=carrier)
        if key in notes:
            doc = f"{doc} {notes[key]}"
        made[key] = setting(name, default, doc, scope)
    return made
