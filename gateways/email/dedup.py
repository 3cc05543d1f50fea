"""The email gateway's send markers: the runtime's one state machine (gateways.core.markers)
under the email key names, unchanged across versions so a rolling upgrade reads the markers
the previous version wrote:

  herald:email:send:<message_id>:<attempt>  the marker (JSON {"s": state, "t": time, ...})
  herald:email:ref:<message_id>             what a bounce or complaint needs to know about a
                                            message (address, contact, campaign, workspace,
                                            variant), written with the first claim of a send
  herald:email:live:<process>               a sending process's liveness key

Held -> written happens right before the end of a mail's DATA is written (gate.WriteGate).
"""

from __future__ import annotations

import redis.asyncio as aioredis

from gateways.core.gate import WriteGate
from gateways.core.markers import (
    DEFERRED,
    FAILED,
    HELD,
    SENDING,
    SUBMITTED,
    WRITTEN,
    Claim,
    Claims,
    Holder,
    MarkerKeys,
    SendMarkers,
    Ticket,
    flat_json,
    json_str,
    marker_json,
)

KEYS = MarkerKeys.for_channel("email")
LIVE_PREFIX = KEYS.live

__all__ = ["DEFERRED", "FAILED", "HELD", "KEYS", "LIVE_PREFIX", "SENDING", "SUBMITTED",
           "WRITTEN", "Claim", "Claims", "Holder", "SendMarkers", "Ticket", "WriteGate",
           "email_markers", "flat_json", "json_str", "key", "marker_json", "ref_key"]


def key(message_id: str, attempt: int) -> str:
    return KEYS.key(message_id, attempt)


def ref_key(message_id: str) -> str:
    return KEYS.ref_key(message_id)


def email_markers(redis: aioredis.Redis, ttl: int, lease: float = 150.0) -> SendMarkers:
    return SendMarkers(redis, ttl, lease, keys=KEYS)
