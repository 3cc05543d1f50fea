"""The runtime's metrics of one channel. The families are made by the channel (their names
are part of its dashboards, alerts and runbook), the runtime counts into them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client import Counter, Histogram


@dataclass(frozen=True)
class ChannelMetrics:
    jobs: Counter  # by result: submitted, failed, deferred, duplicate, busy, expired, ...
    abandoned: Counter  # by reason (judge.REASONS)
    taken_over: Counter  # held claims of stopped processes taken over
    latency: Histogram  # one send to the carrier, as the channel measures it
    # Label values a channel's dashboards knew before the runtime, by the runtime's name
    # (results of jobs_total, reasons of abandoned_total); the others are used as they are.
    results: Mapping[str, str] = field(default_factory=dict)
    reasons: Mapping[str, str] = field(default_factory=dict)

    def result(self, name: str) -> str:
        return self.results.get(name, name)

    def reason(self, name: str) -> str:
        return self.reasons.get(name, name)


def channel_metrics(name: str, what: str = "jobs") -> ChannelMetrics:
    """Families named herald_<name>_<what>_total, herald_<name>_abandoned_total,
    herald_<name>_claims_taken_over_total, herald_<name>_send_latency_seconds."""
    return ChannelMetrics(
        Counter(f"herald_{name}_{what}_total", f"{name} jobs handled, by result.", ["result"]),
        Counter(f"herald_{name}_abandoned_total",
                f"{name} jobs failed as ABANDONED (the carrier may have them), by reason.",
                ["reason"]),
        Counter(f"herald_{name}_claims_taken_over_total",
                f"Send claims of stopped {name} gateway processes taken over by a redelivery."),
        Histogram(f"herald_{name}_send_latency_seconds",
                  f"Time of one send to the {name} carrier.",
                  buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
                           10, 30)),
    )
