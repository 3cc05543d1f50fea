"""The build reads its audience with ResolveAudienceChunks, and from a recipients service
that does not have it (an older version during a rolling upgrade answers UNIMPLEMENTED)
with ResolveAudience, one member per message: the same ledger either way. Real gRPC (an
old-version server in front of the real recipients service), real SQL, a private NATS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2 as rpb
from herald.v1 import recipients_pb2_grpc as rgrpc
from prometheus_client import REGISTRY
from sqlalchemy import select

from services.campaigns.schema import messages
from tests.integration.campaigns_harness import Harness, sms

WS = "build-audience"  # its own workspace: the suppression below stays in it
MD = (("x-herald-workspace", WS),)
N = 25


class OldRecipients:
    """A recipients service from before ResolveAudienceChunks (its service has no such
    method, so gRPC answers UNIMPLEMENTED): ResolveAudience passed on to the real service."""

    def __init__(self, real: rgrpc.RecipientServiceStub) -> None:
        self.real = real
        self.calls = 0

    async def resolve(self, request: rpb.ResolveAudienceRequest,
                      context: grpc.aio.ServicerContext) -> AsyncIterator[rpb.AudienceMember]:
        self.calls += 1
        async for m in self.real.ResolveAudience(request, metadata=context.invocation_metadata()):
            yield m

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler("herald.v1.RecipientService", {
            "ResolveAudience": grpc.unary_stream_rpc_method_handler(
                self.resolve, request_deserializer=rpb.ResolveAudienceRequest.FromString,
                response_serializer=rpb.AudienceMember.SerializeToString)})


def fallbacks() -> float:
    return REGISTRY.get_sample_value("herald_campaigns_audience_fallbacks_total") or 0.0


async def built(h: Harness) -> list[tuple[str, str, int]]:
    req = sms(0, content=pb.Content(text="Hi {{ first_name }}"))
    req.recipients.extend(c.Recipient(phone=f"+447700900{i:03d}", first_name=f"P{i}") for i in range(N))
    req.campaign.auto_start = True
    cp = await h.stub.CreateCampaign(req, metadata=MD)
    await h.stub.ApproveCampaign(pb.CampaignActionRequest(id=cp.id), metadata=MD)
    await h.ticks(1)
    status = await h.status(cp.id, MD)
    assert status.recipients_count == N, status.status_reason
    async with h.engine.connect() as conn:
        rows = (await conn.execute(select(messages.c.address, messages.c.content_preview, messages.c.status)
                                   .where(messages.c.campaign_id == cp.id))).all()
    return sorted((a, p, s) for a, p, s in rows)


async def test_an_older_recipients_service_without_chunks_builds_the_same_ledger(h: Harness) -> None:
    await h.scheduler.recipients.AddSuppression(rpb.AddSuppressionRequest(
        channel=c.CHANNEL_SMS, address="+447700900003", reason="keyword STOP"), metadata=MD)
    before = fallbacks()
    with_chunks = await built(h)
    assert fallbacks() == before

    old = OldRecipients(h.scheduler.recipients)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((old.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    real: Any = h.scheduler.recipients
    h.scheduler.recipients = rgrpc.RecipientServiceStub(channel)
    try:
        without = await built(h)
    finally:
        h.scheduler.recipients = real
        await channel.close()
        await server.stop(0)
    assert old.calls == 1 and fallbacks() == before + 1
    assert without == with_chunks
    assert [p for _a, p, _s in without] == [f"Hi P{i}" for i in range(N)]
    assert [a for a, _p, s in without if s == c.MESSAGE_STATUS_OPTED_OUT] == ["+447700900003"]
