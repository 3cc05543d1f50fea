"""`python -m services.stats` as a real process on the session's NATS and Redis: events
published on the bus come back over gRPC, per workspace; plus auth roles in-process."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import grpc
import pytest
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from herald.v1 import stats_pb2 as pb
from herald.v1 import stats_pb2_grpc as pb_grpc

from cli import procs
from services.stats.aggregator import Aggregator
from services.stats.servicer import StatsServicer
from shared import bus, states
from shared.errors import field_violations
from shared.grpc_server import ServiceRuntime
from shared.timeutil import now_ts

K = e.MessageEventKind
S = c.MessageStatus


def ws(name: str) -> tuple:
    return (("x-herald-workspace", name),)


@pytest.fixture(scope="module")
def service(workdir: Path, nats_url: str, redis_url: str) -> Iterator[procs.Proc]:
    tag = uuid.uuid4().hex[:8]
    proc = procs.start_module("stats-it", "services.stats", workdir / f"stats-{tag}", {
        "HERALD_NATS_URL": nats_url, "HERALD_REDIS_URL": redis_url,
        "HERALD_GRPC_ADDR": "127.0.0.1:0", "HERALD_METRICS_ADDR": "127.0.0.1:0",
        "HERALD_TOKENS_FILE": "",  # development mode: x-herald-workspace picks the workspace
        "HERALD_STATS_PREFIX": f"it{tag}:", "HERALD_STATS_DURABLE": f"stats-it-{tag}",
        "HERALD_STATS_BATCH": "100",
    })
    yield proc
    proc.stop()


@pytest.fixture
async def stub(service: procs.Proc) -> AsyncIterator[pb_grpc.StatsServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.info['grpc_port']}") as ch:
        yield pb_grpc.StatsServiceStub(ch)


class Events:
    """Publishes MessageEvents of one campaign the way the producers do."""

    def __init__(self, js, campaign_id: str, workspace: str) -> None:  # type: ignore[no-untyped-def]
        self.js, self.campaign_id, self.workspace = js, campaign_id, workspace

    async def send(self, kind: int, message_id: str, *, event_id: str | None = None,
                   machine: bool = False) -> e.MessageEvent:
        ev = e.MessageEvent(
            event_id=event_id or str(uuid.uuid4()), kind=kind, message_id=message_id,
            campaign_id=self.campaign_id, workspace_id=self.workspace, channel=c.CHANNEL_EMAIL,
            status=states.KIND_STATUS.get(kind, 0), occurred_at=now_ts(), machine_open=machine)
        await bus.publish(self.js, states.message_subject(kind), ev, ev.event_id)
        return ev


async def wait_for(get: Callable[[], Awaitable[pb.CampaignStats]],
                   ready: Callable[[pb.CampaignStats], bool], timeout: float = 10) -> pb.CampaignStats:
    """The aggregate is eventually consistent with the bus: poll until ready."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        st = await get()
        if ready(st) or asyncio.get_running_loop().time() > deadline:
            return st
        await asyncio.sleep(0.05)


async def test_events_on_the_bus_become_campaign_stats(js, stub: pb_grpc.StatsServiceStub,  # type: ignore[no-untyped-def]
                                                      service: procs.Proc) -> None:
    cid, md = f"cmp-{uuid.uuid4().hex[:8]}", ws("ws-stats-a")
    pub = Events(js, cid, "ws-stats-a")
    for m in ("m1", "m2", "m3", "m4"):
        await pub.send(K.MESSAGE_EVENT_KIND_QUEUED, f"{cid}-{m}")
    for m in ("m1", "m2", "m3"):
        await pub.send(K.MESSAGE_EVENT_KIND_SUBMITTED, f"{cid}-{m}")
    await pub.send(K.MESSAGE_EVENT_KIND_DELIVERED, f"{cid}-m1")
    await pub.send(K.MESSAGE_EVENT_KIND_DELIVERED, f"{cid}-m2")
    await pub.send(K.MESSAGE_EVENT_KIND_FAILED, f"{cid}-m3")
    opened = await pub.send(K.MESSAGE_EVENT_KIND_OPENED, f"{cid}-m1")
    await pub.send(K.MESSAGE_EVENT_KIND_OPENED, f"{cid}-m1")
    await pub.send(K.MESSAGE_EVENT_KIND_OPENED, f"{cid}-m2", machine=True)
    await pub.send(K.MESSAGE_EVENT_KIND_CLICKED, f"{cid}-m1")
    await pub.send(K.MESSAGE_EVENT_KIND_REPLIED, f"{cid}-m2")
    # The same open again after the bus's de-dup window (new Nats-Msg-Id): counted once.
    await bus.publish(js, states.message_subject(K.MESSAGE_EVENT_KIND_OPENED), opened,
                      f"{opened.event_id}:again")
    # A late SUBMITTED for a delivered message changes nothing.
    await pub.send(K.MESSAGE_EVENT_KIND_SUBMITTED, f"{cid}-m1")
    await pub.send(K.MESSAGE_EVENT_KIND_SENDING, f"{cid}-m4")  # published last

    def get() -> Awaitable[pb.CampaignStats]:
        return stub.GetCampaignStats(pb.GetCampaignStatsRequest(campaign_id=cid), metadata=md)

    st = await wait_for(get, lambda s: s.sending == 1)  # the consumer keeps the bus order
    assert st.sending == 1
    assert (st.total, st.sent, st.processed) == (4, 3, 3)
    assert (st.queued, st.submitted, st.delivered, st.failed) == (0, 0, 2, 1)
    assert (st.views, st.viewed, st.machine_opens) == (3, 1, 1)
    assert (st.clicks, st.clicked, st.replies) == (1, 1, 1)
    assert st.delivery_rate == pytest.approx(2 / 3) and st.open_rate == pytest.approx(1 / 3)
    assert st.click_rate == pytest.approx(1 / 3) and st.reply_rate == pytest.approx(1 / 3)

    states_resp = await stub.BatchGetMessageStates(pb.BatchGetMessageStatesRequest(
        message_ids=[f"{cid}-m1", f"{cid}-m4", "never-seen"]), metadata=md)
    got = {s.message_id: (s.status, s.views, s.clicks, s.replies) for s in states_resp.states}
    assert got == {f"{cid}-m1": (S.MESSAGE_STATUS_DELIVERED, 2, 1, 0),
                   f"{cid}-m4": (S.MESSAGE_STATUS_SENDING, 0, 0, 0)}

    wst = await stub.GetWorkspaceStats(pb.GetWorkspaceStatsRequest(), metadata=md)
    assert wst.workspace_id == "ws-stats-a" and wst.messages_total >= 4
    assert wst.messages_delivered >= 2 and wst.messages_failed >= 1

    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{service.info['metrics_port']}/metrics") as r:
        text = await r.text()
    # The service also sees other tests' events on the shared bus: at least ours.
    assert metric(text, 'herald_stats_events_total{kind="opened",result="duplicate"}') >= 1
    assert metric(text, 'herald_stats_events_total{kind="submitted",result="stale"}') >= 1
    assert metric(text, 'herald_stats_events_total{kind="opened",result="applied"}') >= 3
    assert metric(text, "herald_stats_apply_latency_seconds_count") >= 1


def metric(text: str, name: str) -> float:
    line = next((ln for ln in text.splitlines() if ln.startswith(name + " ")), f"{name} 0")
    return float(line.rsplit(" ", 1)[1])


async def test_other_workspace_sees_not_found(js, stub: pb_grpc.StatsServiceStub) -> None:  # type: ignore[no-untyped-def]
    cid = f"cmp-{uuid.uuid4().hex[:8]}"
    pub = Events(js, cid, "ws-stats-owner")
    await pub.send(K.MESSAGE_EVENT_KIND_SUBMITTED, f"{cid}-m1")
    req = pb.GetCampaignStatsRequest(campaign_id=cid)
    st = await wait_for(lambda: stub.GetCampaignStats(req, metadata=ws("ws-stats-owner")),
                        lambda s: s.total == 1)
    assert st.sent == 1
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetCampaignStats(req, metadata=ws("ws-stats-intruder"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    resp = await stub.BatchGetMessageStates(
        pb.BatchGetMessageStatesRequest(message_ids=[f"{cid}-m1"]), metadata=ws("ws-stats-intruder"))
    assert list(resp.states) == []
    # A campaign nobody has seen reads as zeros, not as an error.
    unknown = await stub.GetCampaignStats(pb.GetCampaignStatsRequest(campaign_id="cmp-none"),
                                          metadata=ws("ws-stats-intruder"))
    assert unknown.campaign_id == "cmp-none" and unknown.total == 0 and unknown.delivery_rate == 0


async def test_watch_yields_now_and_after_each_change(js, stub: pb_grpc.StatsServiceStub) -> None:  # type: ignore[no-untyped-def]
    cid, md = f"cmp-{uuid.uuid4().hex[:8]}", ws("ws-stats-watch")
    pub = Events(js, cid, "ws-stats-watch")
    call = stub.WatchCampaignStats(pb.WatchCampaignStatsRequest(campaign_id=cid, interval_ms=100),
                                   metadata=md)
    first = await asyncio.wait_for(call.read(), 10)
    assert first.campaign_id == cid and first.total == 0
    await pub.send(K.MESSAGE_EVENT_KIND_SUBMITTED, f"{cid}-m1")
    await pub.send(K.MESSAGE_EVENT_KIND_DELIVERED, f"{cid}-m1")
    seen = first
    while seen.delivered < 1:  # one or two updates, depending on how the polls fall
        seen = await asyncio.wait_for(call.read(), 10)
        assert seen.total == 1
    assert (seen.sent, seen.delivered, seen.delivery_rate) == (1, 1, 1.0)
    call.cancel()
    assert await call.code() == grpc.StatusCode.CANCELLED

    # A stream of another workspace's campaign ends with NOT_FOUND.
    other = stub.WatchCampaignStats(pb.WatchCampaignStatsRequest(campaign_id=cid),
                                    metadata=ws("ws-stats-intruder"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await asyncio.wait_for(other.read(), 10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


# --- roles and validation, in-process with a tokens file -------------------------------

@pytest.fixture
async def token_stub(tmp_path: Path, redis_client, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
                     ) -> AsyncIterator[tuple[pb_grpc.StatsServiceStub, Aggregator]]:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({
        "tok-a": {"workspace": "ws-a", "roles": ["viewer"]},
        "tok-b": {"workspace": "ws-b", "roles": ["admin"]},
        "tok-master": {"workspace": "ops", "roles": ["master"]},
    }))
    monkeypatch.setenv("HERALD_TOKENS_FILE", str(tokens))
    agg = Aggregator(redis_client, f"tk{uuid.uuid4().hex[:8]}:", message_ttl=600,
                     event_ttl=600, daily_ttl=600)
    rt = ServiceRuntime("stats-test")
    port = await rt.start_grpc([(pb_grpc.add_StatsServiceServicer_to_server, StatsServicer(agg),
                                 "herald.v1.StatsService")])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield pb_grpc.StatsServiceStub(ch), agg
    await rt.shutdown(0)


def bearer(token: str) -> tuple:
    return (("authorization", f"Bearer {token}"),)


async def test_master_reads_across_workspaces_admin_does_not(token_stub) -> None:  # type: ignore[no-untyped-def]
    stub, agg = token_stub
    ev = e.MessageEvent(event_id="e1", kind=K.MESSAGE_EVENT_KIND_DELIVERED, message_id="m1",
                        campaign_id="cmp-a", workspace_id="ws-a")
    assert await agg.apply_batch([ev], datetime.now(UTC)) == ["applied"]
    req = pb.GetCampaignStatsRequest(campaign_id="cmp-a")
    assert (await stub.GetCampaignStats(req, metadata=bearer("tok-a"))).delivered == 1
    assert (await stub.GetCampaignStats(req, metadata=bearer("tok-master"))).delivered == 1
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetCampaignStats(req, metadata=bearer("tok-b"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    ids = pb.BatchGetMessageStatesRequest(message_ids=["m1"])
    assert len((await stub.BatchGetMessageStates(ids, metadata=bearer("tok-master"))).states) == 1
    assert len((await stub.BatchGetMessageStates(ids, metadata=bearer("tok-b"))).states) == 0
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetCampaignStats(req)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_invalid_arguments(token_stub) -> None:  # type: ignore[no-untyped-def]
    stub, _agg = token_stub
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.BatchGetMessageStates(pb.BatchGetMessageStatesRequest(
            message_ids=[f"m{i}" for i in range(1001)]), metadata=bearer("tok-a"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "message_ids" in field_violations(err.value)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetCampaignStats(pb.GetCampaignStatsRequest(), metadata=bearer("tok-a"))
    assert field_violations(err.value) == {"campaign_id": "required"}
    ok = await stub.BatchGetMessageStates(pb.BatchGetMessageStatesRequest(
        message_ids=[f"m{i}" for i in range(1000)]), metadata=bearer("tok-a"))
    assert list(ok.states) == []
