"""End to end: the postback channel, added as one gateway folder and one registry entry, runs
through campaigns, recipients and stats like any channel. A campaign with inline URL targets
is created and approved over gRPC; a receiver that answers each first POST with 503 gets
every rendered JSON exactly once; the ledger and the stats agree."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import common_pb2 as c
from herald.v1 import stats_pb2 as spb

from cli import demo
from cli.devstack import Stack
from gateways.postback.receiver import Receiver

S = c.MessageStatus
MD = demo.WORKSPACE
N = 20
BODY = '{"hello": {{ first_name | tojson }}, "ref": {{ external_id | tojson }}}'


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    st = Stack(Path(tmp_path_factory.mktemp("stack")), postback=True,
               module_env={"postback-gateway": {"HERALD_POSTBACK_RETRY_BASE": "0.2"}})
    st.start()
    yield st
    st.stop()


@pytest.fixture
async def clients(stack: Stack) -> AsyncIterator[demo.Clients]:
    cl = demo.Clients.connect(stack.addr("campaigns"), stack.addr("recipients"),
                              stack.addr("stats"))
    yield cl
    await cl.close()


def request(rx: Receiver, extra: list[c.Recipient]) -> cpb.CreateCampaignRequest:
    return cpb.CreateCampaignRequest(
        campaign=cpb.Campaign(name="e2e postback", channel=c.CHANNEL_POSTBACK, auto_start=True,
                              sender="herald-hooks", content=cpb.Content(text=BODY)),
        recipients=[c.Recipient(first_name=f"Ann {i}", external_id=f"ref-{i}",
                                fields={"url": rx.url(f"/hook/{i}")}) for i in range(N)] + extra)


async def test_postback_campaign_end_to_end(clients: demo.Clients) -> None:
    async with Receiver(fail_first=1) as rx:
        # An address the channel cannot use is refused before anything is stored.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await clients.campaigns.CreateCampaign(request(rx, [c.Recipient(
                fields={"url": "ftp://example.com/x"})]), metadata=MD)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        cp = await clients.campaigns.CreateCampaign(request(rx, []), metadata=MD)
        await clients.campaigns.ApproveCampaign(cpb.CampaignActionRequest(id=cp.id), metadata=MD)
        done = await demo.wait_terminal(clients, cp.id, timeout=60)
    assert done.status == cpb.CAMPAIGN_STATUS_DONE, done
    assert done.progress.total == N and done.progress.errors == 0

    # Each rendered body arrived exactly once, at its own URL, after one 503.
    got = Counter(r.path for r in rx.received)
    assert got == Counter(f"/hook/{i}" for i in range(N))
    for r in rx.received:
        i = int(r.path.rsplit("/", 1)[1])
        assert r.body == {"hello": f"Ann {i}", "ref": f"ref-{i}"}
        assert r.headers["X-Herald-Sender"] == "herald-hooks"
        assert rx.posts[r.key] == 2  # refused once with 503, then accepted

    msgs, token = [], ""
    while True:
        page = await clients.campaigns.ListMessages(cpb.ListMessagesRequest(
            campaign_id=cp.id, page_size=500, page_token=token), metadata=MD)
        msgs.extend(page.messages)
        token = page.next_page_token
        if not token:
            break
    assert len(msgs) == N
    assert {m.status for m in msgs} <= {S.MESSAGE_STATUS_SUBMITTED, S.MESSAGE_STATUS_DELIVERED}
    assert {m.address for m in msgs} == {rx.url(f"/hook/{i}") for i in range(N)}
    assert all(m.HasField("sent_at") and m.channel == c.CHANNEL_POSTBACK for m in msgs)

    st = await demo.wait_stats(clients, cp.id, lambda s: s.sent == N, md=MD)
    assert (st.total, st.sent, st.failed) == (N, N, 0)
    states = await clients.stats.BatchGetMessageStates(
        spb.BatchGetMessageStatesRequest(message_ids=[m.id for m in msgs]), metadata=MD)
    assert {s.message_id: s.status for s in states.states} == {m.id: m.status for m in msgs}
