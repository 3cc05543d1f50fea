"""The build's read of the audience (ResolveAudienceChunks over real gRPC, against a recipients
service that paces its stream): a stream that lasts longer than the idle bound but never pauses
that long is read to the end, in order; one that stalls is cancelled after the idle bound with
AudienceStalled (the build retries it next tick), and the server sees the call end."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2 as rpb
from herald.v1 import recipients_pb2_grpc as rgrpc

from services.campaigns.scheduler.audience import AudienceStalled, audience


def member(i: int) -> rpb.AudienceMember:
    return rpb.AudienceMember(recipient=c.Recipient(phone=f"+447700900{i:03d}"), accepted=True)


class Paced(rgrpc.RecipientServiceServicer):
    """Chunks of two members, `gap` seconds apart; after `stall_after` chunks it waits a minute."""

    def __init__(self, chunks: int, gap: float, stall_after: int | None = None) -> None:
        self.chunks, self.gap, self.stall_after = chunks, gap, stall_after
        self.ended = asyncio.Event()

    async def ResolveAudienceChunks(self, request, context):  # type: ignore[no-untyped-def]
        context.add_done_callback(lambda _ctx: self.ended.set())
        for k in range(self.chunks):
            if k == self.stall_after:
                await asyncio.sleep(60)
            yield rpb.AudienceChunk(members=[member(2 * k), member(2 * k + 1)])
            await asyncio.sleep(self.gap)


async def serve(servicer: Paced) -> tuple[grpc.aio.Server, rgrpc.RecipientServiceStub, grpc.aio.Channel]:
    server = grpc.aio.server()
    rgrpc.add_RecipientServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return server, rgrpc.RecipientServiceStub(channel), channel


async def test_a_long_stream_that_keeps_coming_is_read_to_the_end() -> None:
    server, stub, channel = await serve(Paced(chunks=8, gap=0.15))
    try:
        t0 = time.monotonic()
        got = [m.recipient.phone async for part in audience(stub, rpb.ResolveAudienceRequest(), (), idle=0.6)
               for m in part]
        assert time.monotonic() - t0 > 0.6 * 1.5  # longer than the idle bound as a whole
        assert got == [member(i).recipient.phone for i in range(16)]
    finally:
        await channel.close()
        await server.stop(None)


async def test_a_stalled_stream_is_cancelled_after_the_idle_bound() -> None:
    servicer = Paced(chunks=8, gap=0.0, stall_after=2)
    server, stub, channel = await serve(servicer)
    try:
        got = []
        t0 = time.monotonic()
        with pytest.raises(AudienceStalled, match="no audience from the recipients service for 0.5 s"):
            async for part in audience(stub, rpb.ResolveAudienceRequest(), (), idle=0.5):
                got += part
        assert 0.5 <= time.monotonic() - t0 < 5
        assert len(got) == 4
        await asyncio.wait_for(servicer.ended.wait(), 5)  # the server's call ended too
    finally:
        await channel.close()
        await server.stop(None)
