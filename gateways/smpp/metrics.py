"""Prometheus metrics of the SMPP gateway. Labels are bounded: SMPP status names, receipt
stats, outcomes, and route names (from configuration)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from gateways.core.metrics import ChannelMetrics

SUBMITS = Counter(
    "herald_smpp_submits_total",
    "submit_sm outcomes (one per part): ok, an SMPP status name (e.g. ESME_RTHROTTLED), "
    "timeout or connection_lost, per route.",
    ["route", "status"],
)
SUBMIT_LATENCY = Histogram(
    "herald_smpp_submit_latency_seconds",
    "Time from writing a submit_sm to reading its submit_sm_resp.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
WINDOW_IN_USE = Gauge(
    "herald_smpp_window_in_use", "submit_sm PDUs currently awaiting their response, by route.",
    ["route"],
)
BINDS_UP = Gauge("herald_smpp_binds_up", "SMPP binds currently established, by route.", ["route"])


class BindConfigCollector(Collector):
    """What each route is configured for, read from its binds when scraped:
    herald_smpp_window_size{route} (sum of the binds' windows: the ceiling of
    herald_smpp_window_in_use) and herald_smpp_binds_configured{route} (binds the route
    keeps open: the ceiling of herald_smpp_binds_up)."""

    def describe(self) -> Iterator[GaugeMetricFamily]:  # registration must not collect
        yield GaugeMetricFamily("herald_smpp_window_size", "", labels=["route"])
        yield GaugeMetricFamily("herald_smpp_binds_configured", "", labels=["route"])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from gateways.smpp import session  # imports this module: read at scrape time

        size = GaugeMetricFamily("herald_smpp_window_size",
                                 "Configured submit_sm window summed over the route's binds.",
                                 labels=["route"])
        binds = GaugeMetricFamily("herald_smpp_binds_configured",
                                  "SMPP binds the route is configured to keep open.", labels=["route"])
        for route, clients in sorted(session.CLIENTS_BY_ROUTE.items()):
            THROTTLING.labels(route)  # each route's counter starts at 0, for rate()
            live = list(clients)
            size.add_metric([route], sum(cl.window_size for cl in live))
            binds.add_metric([route], len(live))
        yield size
        yield binds


REGISTRY.register(BindConfigCollector())
BIND_ATTEMPTS = Counter(
    "herald_smpp_bind_attempts_total", "Connect-and-bind attempts, by outcome (ok or the failure).",
    ["outcome"],
)
THROTTLING = Counter(
    "herald_smpp_throttling_events_total",
    "Times the SMSC answered ESME_RTHROTTLED or ESME_RMSGQFUL and the bind was slowed down, by route.",
    ["route"],
)
RECEIPTS = Counter(
    "herald_smpp_receipts_total",
    "Delivery receipts credited to a message (one per part), by stat (DELIVRD, UNDELIV, ...; "
    "invalid = unparseable; OTHER = unknown stat). Receipts credited to no message are in "
    "herald_smpp_receipts_unmatched_total.",
    ["stat"],
)
UNMATCHED_REASONS = ("unknown_id", "address_mismatch", "backlog")
RECEIPTS_UNMATCHED = Counter(
    "herald_smpp_receipts_unmatched_total",
    "Delivery receipts credited to no message, by reason: unknown_id = no mapping for the "
    "SMSC id within HERALD_SMPP_RECEIPT_MATCH_WAIT; address_mismatch = mappings for the id "
    "exist but none is for the receipt's source address (an SMSC that reissued ids); backlog = "
    "too many receipts already waiting for their mapping (not held: handled at once). Final "
    "ones are published on events.receipt.unmatched, then acknowledged.",
    ["reason"],
)
for _reason in UNMATCHED_REASONS:  # exported at 0 from the start, for rate() alerts
    RECEIPTS_UNMATCHED.labels(_reason)
RECEIPT_LAG = Histogram(
    "herald_smpp_receipt_lag_seconds",
    "Time from the submit_sm_resp of a part to its final receipt.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400),
)
MO_MESSAGES = Counter(
    "herald_smpp_mo_messages_total",
    "Mobile-originated deliver_sm, by outcome (replied = linked to a message we sent, "
    "opted_out = opt-out keyword, unlinked = no message from that sender to that number: "
    "published to no workspace).",
    ["outcome"],
)
ABANDONED_REASONS = ("abandoned", "redis_lost")
ABANDONED = Counter(
    "herald_smpp_abandoned_total",
    "Jobs FAILED as ABANDONED (category UNKNOWN: the SMSC may have accepted them; never resent), "
    "by reason: abandoned = its submit_sm was written by a gateway that died before recording "
    "the outcome; redis_lost = redelivered with no send marker after Redis lost its data "
    "(published before the Redis epoch began: it may have been sent under a lost marker).",
    ["reason"],
)
for _reason in ABANDONED_REASONS:
    ABANDONED.labels(_reason)
RECEIPTS_PUBLISHED_UNMATCHED = Counter(
    "herald_smpp_receipts_unmatched_published_total",
    "Final receipts credited to no message from Redis and published on events.receipt.unmatched "
    "for the campaigns ledger to match by provider_message_id and destination.",
)
JOBS = Counter(
    "herald_smpp_jobs_total",
    "SMS jobs handled, by outcome (submitted, failed, expired, duplicate = redelivered with an "
    "outcome on record, retry, taken_over = held by a gateway that is gone, sent here).",
    ["outcome"],
)

# What the runtime (gateways.core) counts, in this gateway's families and label values:
# ABANDONED jobs are failed jobs, and every job handed back (busy elsewhere, throttled, not
# bound) is a retry.
RUNTIME = ChannelMetrics(
    JOBS, ABANDONED, JOBS.labels("taken_over"), SUBMIT_LATENCY,
    results={"abandoned": "failed", "busy": "retry", "not_written": "retry", "deferred": "retry"},
    reasons={"worker_stopped": "abandoned"})
