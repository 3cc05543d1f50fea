"""The audience a build reads from the recipients service: ResolveAudienceChunks (many
members per gRPC message: one message per member cost both services more than the member
itself), or ResolveAudience, one member per message, from a recipients service that does
not have it yet (it answers UNIMPLEMENTED during a rolling upgrade)."""

from __future__ import annotations

import asyncio
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


class AudienceStalled(Exception):
    """The recipients service sent nothing for `idle` seconds while the stream was open."""

    def __init__(self, idle: float) -> None:
        super().__init__(f"no audience from the recipients service for {idle:g} s")


async def _next(call: Any, stream: Any, idle: float) -> Any:
    """The stream's next message, or AudienceStalled (the call cancelled) after `idle` s."""
    try:
        return await asyncio.wait_for(stream.__anext__(), idle)
    except TimeoutError:
        await _end(call)
        raise AudienceStalled(idle) from None


async def _end(call: Any) -> None:
    """End the read of a stream early: cancel the gRPC call (a stream another layer wraps,
    e.g. an async generator, is closed instead)."""
    if hasattr(call, "cancel"):
        call.cancel()
    elif hasattr(call, "aclose"):
        await call.aclose()


async def audience(recipients: Any, req: rpb.ResolveAudienceRequest, metadata: Any,
                   idle: float) -> AsyncIterator[Sequence[rpb.AudienceMember]]:
    """The resolved audience, in order, a list of members at a time (never empty).

    `idle` bounds each wait for the next message, not the whole stream: a build writes as it
    reads, so a large audience's stream is open for as long as the build takes (a deadline of
    10 minutes over the whole stream cut a 1,000,000-recipient build short and made it start
    its read again)."""
    call = recipients.ResolveAudienceChunks(req, metadata=metadata)
    try:
        stream = call.__aiter__()
        first = True
        while True:
            try:
                chunk = await _next(call, stream, idle)
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
    finally:
        await _end(call)  # a build that stopped reading (an error, a lost lease): the stream ends
    AUDIENCE_FALLBACKS.inc()
    log.info("recipients service has no ResolveAudienceChunks: reading the audience one member "
             "per message (ResolveAudience)")
    batch: list[rpb.AudienceMember] = []
    call = recipients.ResolveAudience(req, metadata=metadata)
    try:
        stream = call.__aiter__()
        while True:
            try:
                m = await _next(call, stream, idle)
            except StopAsyncIteration:
                break
            batch.append(m)
            if len(batch) >= FALLBACK_BATCH:
                yield batch
                batch = []
    finally:
        await _end(call)
    if batch:
        yield batch
