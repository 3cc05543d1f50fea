"""RebuildCampaignStats against the whole stack (real processes, bearer tokens): a campaign
runs to the end, Redis loses everything (FLUSHALL), and the rebuild brings the stats back
equal to the ledger, counter by counter and message by message, while click and reply events
keep arriving; roles and arguments are checked. Before RebuildCampaignStats existed every
call here was UNIMPLEMENTED."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import campaigns_pb2_grpc as cgrpc
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from herald.v1 import stats_pb2 as spb
from herald.v1 import stats_pb2_grpc as sgrpc

from cli import demo
from cli.devstack import Stack
from shared import bus, cache, states
from shared.timeutil import now_ts

K = e.MessageEventKind
WS = "ws-rebuild"
N = 120  # three ledger pages of 50 (HERALD_STATS_REBUILD_PAGE below)
TOKENS = {
    "tok-svc": {"workspace": "herald", "roles": ["service"], "pii": True},
    "tok-admin": {"workspace": WS, "roles": ["admin"], "pii": True},
    "tok-op": {"workspace": WS, "roles": ["operator"]},
    "tok-viewer": {"workspace": WS, "roles": ["viewer"]},
    "tok-other": {"workspace": "ws-rebuild-other", "roles": ["operator"]},
}


def bearer(token: str, workspace: str = "") -> tuple:
    md = [("authorization", f"Bearer {token}")]
    if workspace:
        md.append(("x-herald-workspace", workspace))
    return tuple(md)


ADMIN = bearer("tok-admin")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    work = Path(tmp_path_factory.mktemp("rebuild-stack"))
    tokens = work / "tokens.json"
    tokens.write_text(json.dumps(TOKENS))
    st = Stack(work / "stack", tokens_file=tokens, service_token="tok-svc", module_env={
        "stats": {"HERALD_STATS_REBUILD_PAGE": "50"},
        # Receipts: numbers ending in 3 or 7 are undeliverable (sent, then FAILED).
        "smsc-simulator": {"HERALD_SMPP_SIM_FAIL_PATTERN": "(3|7)$"}})
    st.start()
    yield st
    st.stop()


@pytest.fixture
async def stubs(stack: Stack) -> AsyncIterator[tuple[cgrpc.CampaignServiceStub, sgrpc.StatsServiceStub]]:
    async with grpc.aio.insecure_channel(stack.addr("campaigns")) as cch, \
            grpc.aio.insecure_channel(stack.addr("stats")) as sch:
        yield cgrpc.CampaignServiceStub(cch), sgrpc.StatsServiceStub(sch)


async def ledger(camp: cgrpc.CampaignServiceStub, cid: str) -> list[cpb.Message]:
    out, token = [], ""
    while True:
        page = await camp.ListMessages(cpb.ListMessagesRequest(
            campaign_id=cid, page_size=1000, page_token=token), metadata=ADMIN)
        out.extend(page.messages)
        token = page.next_page_token
        if not token:
            return out


PROGRESS_VS_STATS = (("total", "total"), ("processed", "processed"), ("sent", "sent"),
                     ("delivered", "delivered"), ("errors", "failed"), ("opted_out", "opted_out"),
                     ("queued", "queued"), ("sending", "sending"), ("submitted", "submitted"),
                     ("assumed_delivered", "assumed_delivered"), ("deferred", "deferred"),
                     ("cancelled", "cancelled"))


async def differences(camp: cgrpc.CampaignServiceStub, stats: sgrpc.StatsServiceStub,
                      cid: str) -> list[str]:
    """Every way the stats differ from the ledger ([] when equal)."""
    cp = await camp.GetCampaign(cpb.GetCampaignRequest(id=cid), metadata=ADMIN)
    st = await stats.GetCampaignStats(spb.GetCampaignStatsRequest(campaign_id=cid), metadata=ADMIN)
    msgs = await ledger(camp, cid)
    out = [f"{p}: ledger {getattr(cp.progress, p)} stats {getattr(st, s)}"
           for p, s in PROGRESS_VS_STATS if getattr(cp.progress, p) != getattr(st, s)]
    sums = {"views": sum(m.views for m in msgs), "clicks": sum(m.clicks for m in msgs),
            "replies": sum(m.replies for m in msgs), "viewed": sum(m.views > 0 for m in msgs),
            "clicked": sum(m.clicks > 0 for m in msgs)}
    out += [f"{k}: ledger {v} stats {getattr(st, k)}" for k, v in sums.items() if getattr(st, k) != v]
    got = {}
    for i in range(0, len(msgs), 1000):
        resp = await stats.BatchGetMessageStates(spb.BatchGetMessageStatesRequest(
            message_ids=[m.id for m in msgs[i:i + 1000]]), metadata=ADMIN)
        got.update({s.message_id: (s.status, s.views, s.clicks, s.replies) for s in resp.states})
    out += [f"message {m.id}: ledger {(m.status, m.views, m.clicks, m.replies)} stats {got.get(m.id)}"
            for m in msgs if got.get(m.id) != (m.status, m.views, m.clicks, m.replies)]
    return out


async def settle(camp: cgrpc.CampaignServiceStub, stats: sgrpc.StatsServiceStub, cid: str,
                 expect_clicks: int, expect_replies: int) -> list[str]:
    """Both consumers are eventually consistent with the bus: poll until the ledger shows the
    events published and the stats equal it (or give up and return the differences)."""
    diffs: list[str] = []
    for _ in range(240):
        msgs = await ledger(camp, cid)
        if sum(m.clicks for m in msgs) == expect_clicks and sum(m.replies for m in msgs) == expect_replies:
            diffs = await differences(camp, stats, cid)
            if not diffs:
                return []
        await asyncio.sleep(0.25)
    return diffs or ["the ledger never showed the published events"]


class Publisher:
    def __init__(self, js, cid: str) -> None:  # type: ignore[no-untyped-def]
        self.js, self.cid = js, cid

    async def send(self, kind: int, m: cpb.Message) -> None:
        ev = e.MessageEvent(event_id=str(uuid.uuid4()), kind=kind, message_id=m.id,
                            campaign_id=self.cid, workspace_id=WS, channel=m.channel,
                            variant=m.variant, occurred_at=now_ts(), url="https://example.com/x",
                            reply_from="447700900000", reply_text="thanks")
        await bus.publish(self.js, states.message_subject(kind), ev, ev.event_id)


async def test_rebuild_after_redis_lost_everything(stack: Stack, stubs) -> None:  # type: ignore[no-untyped-def]
    camp, stats = stubs
    cp = await camp.CreateCampaign(cpb.CreateCampaignRequest(
        request_id=str(uuid.uuid4()),
        recipients=[c.Recipient(phone=f"+447700900{i:03d}") for i in range(N)],
        campaign=cpb.Campaign(name="rebuild", channel=c.CHANNEL_SMS, sender="HERALD",
                              auto_start=True, content=cpb.Content(text="Your parcel arrives today"))),
        metadata=ADMIN)
    await camp.ApproveCampaign(cpb.CampaignActionRequest(id=cp.id), metadata=ADMIN)
    clients = demo.Clients.connect(stack.addr("campaigns"), stack.addr("recipients"), stack.addr("stats"))
    try:
        done = await demo.wait_terminal(clients, cp.id, timeout=120, md=ADMIN)
    finally:
        await clients.close()
    assert done.status == cpb.CAMPAIGN_STATUS_DONE
    assert (done.progress.total, done.progress.delivered, done.progress.errors) == (N, 96, 24)

    nc = await bus.connect(stack.procs["nats"].info["url"])
    js = nc.jetstream()
    pub = Publisher(js, cp.id)
    msgs = await ledger(camp, cp.id)
    # Before the loss: a few clicks and replies, seen by both the ledger and the stats.
    for m in msgs[:10]:
        await pub.send(K.MESSAGE_EVENT_KIND_CLICKED, m)
    for m in msgs[5:8]:
        await pub.send(K.MESSAGE_EVENT_KIND_REPLIED, m)
        await pub.send(K.MESSAGE_EVENT_KIND_REPLIED, m)
    assert await settle(camp, stats, cp.id, 10, 6) == []

    redis = cache.connect(stack.procs["redis"].info["url"])
    try:
        await redis.flushall()
    finally:
        await redis.aclose()
    # What the code answers after the loss: the campaign is known to CampaignService, so
    # GetCampaignStats is zeros (not NOT_FOUND), and no message state is known.
    st = await stats.GetCampaignStats(spb.GetCampaignStatsRequest(campaign_id=cp.id), metadata=ADMIN)
    assert (st.total, st.sent, st.delivered, st.failed, st.clicks) == (0, 0, 0, 0, 0)
    resp = await stats.BatchGetMessageStates(spb.BatchGetMessageStatesRequest(
        message_ids=[m.id for m in msgs[:50]]), metadata=ADMIN)
    assert list(resp.states) == []

    # The rebuild, while clicks and replies keep arriving (messages that had none yet).
    # (a grpc.aio call starts when created and runs while the events are published)
    rebuild = stats.RebuildCampaignStats(spb.RebuildCampaignStatsRequest(campaign_id=cp.id),
                                         metadata=bearer("tok-op"))
    for m in msgs[60:70]:
        await pub.send(K.MESSAGE_EVENT_KIND_CLICKED, m)
        await pub.send(K.MESSAGE_EVENT_KIND_REPLIED, m)
    rebuilt = await rebuild
    assert rebuilt.campaign_id == cp.id and rebuilt.total == N
    assert (rebuilt.sent, rebuilt.delivered, rebuilt.failed, rebuilt.processed) == (N, 96, 24, N)
    assert await settle(camp, stats, cp.id, 20, 16) == []
    await nc.close()

    # Again, by an admin and by a service acting for the workspace: the same figures.
    for md in (ADMIN, bearer("tok-svc", WS)):
        again = await stats.RebuildCampaignStats(spb.RebuildCampaignStatsRequest(campaign_id=cp.id),
                                                 metadata=md)
        assert (again.total, again.clicks, again.replies, again.clicked) == (N, 20, 16, 20)
    assert await differences(camp, stats, cp.id) == []

    # Roles and arguments.
    req = spb.RebuildCampaignStatsRequest(campaign_id=cp.id)
    for md, code in ((bearer("tok-viewer"), grpc.StatusCode.PERMISSION_DENIED),
                     (bearer("tok-other"), grpc.StatusCode.NOT_FOUND),
                     ((), grpc.StatusCode.UNAUTHENTICATED)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stats.RebuildCampaignStats(req, metadata=md)
        assert err.value.code() == code
    for cid, code in (("", grpc.StatusCode.INVALID_ARGUMENT), ("cmp-1", grpc.StatusCode.INVALID_ARGUMENT),
                      (str(uuid.uuid4()), grpc.StatusCode.NOT_FOUND)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stats.RebuildCampaignStats(spb.RebuildCampaignStatsRequest(campaign_id=cid),
                                             metadata=bearer("tok-op"))
        assert err.value.code() == code

    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{stack.procs['stats'].info['metrics_port']}/metrics") as r:
        text = await r.text()
    assert metric(text, 'herald_stats_rebuilds_total{result="ok"}') == 3
    assert metric(text, 'herald_stats_rebuilds_total{result="refused"}') == 3
    assert metric(text, 'herald_stats_rebuilds_total{result="not_found"}') == 2


def metric(text: str, name: str) -> float:
    line = next((ln for ln in text.splitlines() if ln.startswith(name + " ")), f"{name} 0")
    return float(line.rsplit(" ", 1)[1])
