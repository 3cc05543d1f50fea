"""Prometheus metrics of the stats service (no campaign/workspace labels: unbounded)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

EVENTS = Counter(
    "herald_stats_events_total",
    "Message events seen by the aggregator, by kind and result "
    "(applied, duplicate, stale, ignored).",
    ["kind", "result"],
)
APPLY_LATENCY = Histogram(
    "herald_stats_apply_latency_seconds",
    "Time to apply one fetched batch of events to Redis (one call of the event script).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
EVENT_LAG = Histogram(
    "herald_stats_event_lag_seconds",
    "Age of an event (now - occurred_at) when the aggregator applies it.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
WATCHERS = Counter(
    "herald_stats_watch_updates_total",
    "CampaignStats messages sent to WatchCampaignStats streams.",
)
REBUILDS = Counter(
    "herald_stats_rebuilds_total",
    "RebuildCampaignStats calls by result: ok, refused (role or argument), not_found, "
    "ledger_unavailable, consumer_behind, superseded (a newer rebuild took over), cancelled, "
    "error.",
    ["result"],
)
