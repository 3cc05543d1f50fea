"""A campaign's messages keep the order of its audience: ListMessages in created order (and so
the dispatcher's pages, which read the same index) lists them as the recipients were given,
not in the order of their message ids. Real gRPC, real SQL on both backends, a private NATS,
the recipients service as a process."""

from __future__ import annotations

from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c

from tests.integration.campaigns_harness import Harness, sms

MD = (("x-herald-workspace", "build-order"),)
N = 40
# An order of the audience that neither the addresses nor the message ids sort into.
ORDER = [(i * 17) % N for i in range(N)]


async def listed(h: Harness, cid: str) -> list[str]:
    r = await h.stub.ListMessages(pb.ListMessagesRequest(campaign_id=cid, order_by="created", page_size=N),
                                  metadata=MD)
    assert r.total_size == N, r
    return [m.phone for m in r.messages]


async def build(h: Harness, **campaign: object) -> str:
    req = sms(0, auto_start=True, **campaign)
    req.recipients.extend(c.Recipient(phone=f"+447700900{i:03d}") for i in ORDER)
    cp = await h.stub.CreateCampaign(req, metadata=MD)
    await h.stub.ApproveCampaign(pb.CampaignActionRequest(id=cp.id), metadata=MD)
    await h.ticks(1)
    got = await h.status(cp.id, MD)
    assert got.recipients_count == N, got.status_reason
    return cp.id


async def test_messages_are_listed_in_the_audience_order(h: Harness) -> None:
    cid = await build(h)
    assert await listed(h, cid) == [f"+447700900{i:03d}" for i in ORDER]


async def test_an_ab_campaign_keeps_the_audience_order_too(h: Harness) -> None:
    cid = await build(h, test_percent=50, variants=[
        pb.Variant(name="A", split_percent=50, content=pb.Content(text="a")),
        pb.Variant(name="B", split_percent=50, content=pb.Content(text="b"))])
    assert await listed(h, cid) == [f"+447700900{i:03d}" for i in ORDER]
