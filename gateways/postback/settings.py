"""HERALD_POSTBACK_* settings of the postback gateway (documented in shared.config.REGISTRY)."""

from __future__ import annotations

from shared.config import setting

SCOPE = "postback gateway"

TIMEOUT = setting(
    "HERALD_POSTBACK_TIMEOUT", "10",
    "Seconds one POST may take (connect, send, answer). A POST that times out is retried "
    "like a 5xx: the receiver may then see it twice and de-duplicates by Idempotency-Key.",
    SCOPE,
)
CONCURRENCY = setting(
    "HERALD_POSTBACK_CONCURRENCY", "64",
    "POSTs in flight at once per gateway process (also the jobs fetched per batch).", SCOPE,
)
MAX_ATTEMPTS = setting(
    "HERALD_POSTBACK_MAX_ATTEMPTS", "5",
    "Deliveries of a job answered 5xx, 408, 425, 429 or unreachable before it fails.", SCOPE,
)
RETRY_BASE = setting(
    "HERALD_POSTBACK_RETRY_BASE", "30",
    "Seconds before the first retry of a deferred POST; doubles per delivery.", SCOPE,
)
RETRY_MAX = setting(
    "HERALD_POSTBACK_RETRY_MAX", "3600", "Longest wait between two retries of a POST, seconds.",
    SCOPE,
)
MARKER_TTL = setting(
    "HERALD_POSTBACK_MARKER_TTL", "604800",
    "Seconds a send marker (held, written, outcome) of a postback job is kept in Redis: a "
    "redelivery within it never POSTs twice what was answered.", SCOPE,
)
