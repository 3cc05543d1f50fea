"""Prometheus metrics of the email gateway (no per-campaign or per-address labels)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from gateways.core.metrics import ChannelMetrics

SENDS = Counter(
    "herald_email_sends_total",
    "Email jobs handled, by result: submitted, failed, deferred, duplicate (already sent), "
    "busy (another worker is sending it), expired, not_written (its claim was lost before the "
    "content was written: redelivered).",
    ["result"],
)
SEND_LATENCY = Histogram(
    "herald_email_send_latency_seconds",
    "Time of one SMTP transaction with the relay (connection setup included when needed).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TRACKING = Counter(
    "herald_tracking_requests_total",
    "Tracking HTTP requests, by kind (open, click, unsubscribe_page, unsubscribe) and result "
    "(ok, invalid, error, limited).",
    ["kind", "result"],
)
DROP_REASONS = ("queue_full", "publish_failed")
TRACKING_DROPPED_BY_REASON = Counter(
    "herald_tracking_events_dropped_total",
    "Open/click events not published, by reason: queue_full = the tracking endpoint's publish "
    "queue was full; publish_failed = JetStream refused or timed out on every retry.",
    ["reason"],
)
TRACKING_DROPPED = TRACKING_DROPPED_BY_REASON.labels("queue_full")
TRACKING_PUBLISH_FAILED = TRACKING_DROPPED_BY_REASON.labels("publish_failed")
ABANDONED = Counter(
    "herald_email_abandoned_total",
    "Email jobs failed as ABANDONED (the relay may have accepted them; not resent), by reason: "
    "worker_stopped (DATA written, then the worker stopped before the answer was recorded), "
    "redis_lost (a redelivered job whose marker Redis lost), corrupt_marker.",
    ["reason"],
)
CLAIMS_TAKEN_OVER = Counter(
    "herald_email_claims_taken_over_total",
    "Send claims ('held' markers) of stopped workers taken over by a redelivery: those "
    "messages had not been written to the relay and are sent cleanly.",
)
# What the channel runtime counts for email, under the names dashboards, alerts and the
# runbook use.
RUNTIME = ChannelMetrics(jobs=SENDS, abandoned=ABANDONED, taken_over=CLAIMS_TAKEN_OVER,
                         latency=SEND_LATENCY)
