"""The audience a build reads from the recipients service: ResolveAudienceChunks (many
members per gRPC message: one message per member cost both services more than the member
itself), or ResolveAudience, one member per message, from a recipients service that does
not have it yet (it answers UNIMPLEMENTED during a rolling upgrade)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
from herald.v1 import recipients_pb2 as rpb
from prometheus_client import Counter

log = logging.getLogger("herald.campaigns.scheduler")

AUDIENCE_FALLBACKS = Counter(
    "herald_campaigns_audience_fallbacks_total",
    "Builds that read their audience one member per message (ResolveAudience) because the "
    "recipients service answered ResolveAudienceChunks with UNIMPLEMENTED (an older version).")
FALLBACK_BATCH = 1000  # ResolveAudience's members handed on together


async def audience(recipients: Any, req: rpb.ResolveAudienceRequest, metadata: Any,
                   timeout: float) -> AsyncIterator[Sequence[rpb.AudienceMember]]:
    """The resolved audience, in order, a list of members at a time (never empty)."""
    stream = recipients.ResolveAudienceChunks(req, metadata=metadata, timeout=timeout).__aiter__()
    first = True
    while True:
        try:
            chunk = await stream.__anext__()
        except StopAsyncIteration:
            return
        except grpc.aio.AioRpcError as exc:
            # Only before any member: a stream that broke half way is an error to retry.
            if not first or exc.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
            break
        first = False
        if chunk.members:
            yield chunk.members
    AUDIENCE_FALLBACKS.inc()
    log.info("recipients service has no ResolveAudienceChunks: reading the audience one member "
             "per message (ResolveAudience)")
    batch: list[rpb.AudienceMember] = []
    async for m in recipients.ResolveAudience(req, metadata=metadata, timeout=timeout):
        batch.append(m)
        if len(batch) >= FALLBACK_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch
