"""Prometheus metrics of the SMPP gateway (labels are bounded: SMPP status names, stats)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SUBMITS = Counter(
    "herald_smpp_submits_total",
    "submit_sm outcomes: ok, an SMPP status name (e.g. ESME_RTHROTTLED), timeout or connection_lost.",
    ["status"],
)
SUBMIT_LATENCY = Histogram(
    "herald_smpp_submit_latency_seconds",
    "Time from writing a submit_sm to reading its submit_sm_resp.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
WINDOW_IN_USE = Gauge(
    "herald_smpp_window_in_use", "submit_sm PDUs currently awaiting their response."
)
BINDS_UP = Gauge("herald_smpp_binds_up", "SMPP binds currently established (0 or 1 per process).")
BIND_ATTEMPTS = Counter(
    "herald_smpp_bind_attempts_total", "Connect-and-bind attempts, by outcome (ok or the failure).",
    ["outcome"],
)
RECEIPTS = Counter(
    "herald_smpp_receipts_total",
    "Delivery receipts received, by stat (DELIVRD, UNDELIV, ...; unmatched = no id mapping yet, "
    "invalid = unparseable, OTHER = unknown stat).",
    ["stat"],
)
MO_MESSAGES = Counter(
    "herald_smpp_mo_messages_total",
    "Mobile-originated deliver_sm received (acknowledged but not yet routed anywhere).",
)
JOBS = Counter(
    "herald_smpp_jobs_total",
    "SMS jobs handled, by outcome (submitted, failed, expired, duplicate, retry).",
    ["outcome"],
)
