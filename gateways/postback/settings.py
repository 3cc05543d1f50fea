"""HERALD_POSTBACK_* settings of the postback gateway (documented in shared.config.REGISTRY)."""

from __future__ import annotations

from gateways.core.settings import declare
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
RUNTIME = declare(SCOPE, "receiver", {
    "max_attempts": ("HERALD_POSTBACK_MAX_ATTEMPTS", "5"),
    "retry_base": ("HERALD_POSTBACK_RETRY_BASE", "30"),
    "retry_max": ("HERALD_POSTBACK_RETRY_MAX", "3600"),
    "marker_ttl": ("HERALD_POSTBACK_MARKER_TTL", "604800")},
    {"max_attempts": "Deferred: answered 5xx, 408, 425, 429, or unreachable."})
MARKER_TTL = RUNTIME["marker_ttl"]
