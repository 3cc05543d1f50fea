"""`python -m services.stats` as a real process on the session's NATS and Redis, asking a
real campaigns process about campaigns it has no events for: events published on the bus
come back over gRPC, per workspace; plus auth roles and validation in-process."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import grpc
import pytest
from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import campaigns_pb2_grpc as cgrpc
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from herald.v1 import stats_pb2 as pb
from herald.v1 import stats_pb2_grpc as pb_grpc

from cli import procs
from services.stats.aggregator import Aggregator
from services.stats.directory import CampaignDirectory
from services.stats.servicer import StatsServicer
from shared import bus, states
from shared.errors import field_violations
from shared.grpc_server import ServiceRuntime
from shared.timeutil import now_ts
from tests.integration.campaigns_harness import start_recipients

K = e.MessageEventKind
S = c.MessageStatus


def ws(name: str) -> tuple:
    return (("x-herald-workspace", name),)


def uid() -> str:
    return str(uuid.uuid4())


@pytest.fixture(scope="module")
def campaigns_addr(workdir: Path, nats_url: str) -> Iterator[str]:
    """The real campaigns service (with recipients), as stats finds it in a stack."""
    tag = uuid.uuid4().hex[:8]
    work = workdir / f"stats-campaigns-{tag}"
    work.mkdir()
    rec = start_recipients(work, nats_url)
    camp = procs.start_module("campaigns-for-stats", "services.campaigns", work, {
        "HERALD_DB_URL": f"sqlite+aiosqlite:///{work}/campaigns.db", "HERALD_NATS_URL": nats_url,
        "HERALD_GRPC_ADDR": "127.0.0.1:0", "HERALD_METRICS_ADDR": "127.0.0.1:0",
        "HERALD_TOKENS_FILE": "", "HERALD_RECIPIENTS_ADDR": f"127.0.0.1:{rec.info['grpc_port']}"})
    yield f"127.0.0.1:{camp.info['grpc_port']}"
    camp.stop()
    rec.stop()


@pytest.fixture(scope="module")
def prefix() -> str:
    return f"it{uuid.uuid4().hex[:8]}:"


@pytest.fixture(scope="module")
def service(workdir: Path, nats_url: str, redis_url: str, campaigns_addr: str,
            prefix: str) -> Iterator[procs.Proc]:
    tag = prefix[2:-1]
    proc = procs.start_module("stats-it", "services.stats", workdir / f"stats-{tag}", {
        "HERALD_NATS_URL": nats_url, "HERALD_REDIS_URL": redis_url,
        "HERALD_GRPC_ADDR": "127.0.0.1:0", "HERALD_METRICS_ADDR": "127.0.0.1:0",
        "HERALD_TOKENS_FILE": "",  # development mode: x-herald-workspace picks the workspace
        "HERALD_STATS_PREFIX": prefix, "HERALD_STATS_DURABLE": f"stats-it-{tag}",
        "HERALD_STATS_BATCH": "100", "HERALD_CAMPAIGNS_ADDR": campaigns_addr,
    })
    yield proc
    proc.stop()


@pytest.fixture
async def stub(service: procs.Proc) -> AsyncIterator[pb_grpc.StatsServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.info['grpc_port']}") as ch:
        yield pb_grpc.StatsServiceStub(ch)


@pytest.fixture
async def campaigns(campaigns_addr: str) -> AsyncIterator[cgrpc.CampaignServiceStub]:
    async with grpc.aio.insecure_channel(campaigns_addr) as ch:
        yield cgrpc.CampaignServiceStub(ch)


class Events:
    """Publishes MessageEvents of one campaign the way the producers do."""

    def __init__(self, js, campaign_id: str, workspace: str) -> None:  # type: ignore[no-untyped-def]
        self.js, self.campaign_id, self.workspace = js, campaign_id, workspace

    async def send(self, kind: int, message_id: str, *, event_id: str | None = None,
                   machine: bool = False, attempt: int = 0) -> e.MessageEvent:
        ev = e.MessageEvent(
            event_id=event_id or str(uuid.uuid4()), kind=kind, message_id=message_id,
            campaign_id=self.campaign_id, workspace_id=self.workspace, channel=c.CHANNEL_EMAIL,
            status=states.KIND_STATUS.get(kind, 0), occurred_at=now_ts(), machine_open=machine,
            attempt=attempt)
        await bus.publish(self.js, states.message_subject(kind), ev, ev.event_id)
        return ev


async def wait_for(get: Callable[[], Awaitable[pb.CampaignStats]],
                   ready: Callable[[pb.CampaignStats], bool], timeout: float = 10) -> pb.CampaignStats:
    """The aggregate is eventually consistent with the bus: poll until ready (a campaign
    is NOT_FOUND until its first event is applied)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            st = await get()
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.NOT_FOUND or asyncio.get_running_loop().time() > deadline:
                raise
        else:
            if ready(st) or asyncio.get_running_loop().time() > deadline:
                return st
        await asyncio.sleep(0.05)


async def test_events_on_the_bus_become_campaign_stats(js, stub: pb_grpc.StatsServiceStub,  # type: ignore[no-untyped-def]
                                                      service: procs.Proc) -> None:
    cid, md = uid(), ws("ws-stats-a")
    m1, m2, m3, m4 = (uid() for _ in range(4))
    pub = Events(js, cid, "ws-stats-a")
    for m in (m1, m2, m3, m4):
        await pub.send(K.MESSAGE_EVENT_KIND_QUEUED, m)
    for m in (m1, m2, m3):
        await pub.send(K.MESSAGE_EVENT_KIND_SUBMITTED, m)
    await pub.send(K.MESSAGE_EVENT_KIND_DELIVERED, m1)
    await pub.send(K.MESSAGE_EVENT_KIND_DELIVERED, m2)
    await pub.send(K.MESSAGE_EVENT_KIND_FAILED, m3)
    opened = await pub.send(K.MESSAGE_EVENT_KIND_OPENED, m1)
    await pub.send(K.MESSAGE_EVENT_KIND_OPENED, m1)
    await pub.send(K.MESSAGE_EVENT_KIND_OPENED, m2, machine=True)
    await pub.send(K.MESSAGE_EVENT_KIND_CLICKED, m1)
    await pub.send(K.MESSAGE_EVENT_KIND_REPLIED, m2)
    # The same open again after the bus's de-dup window (new Nats-Msg-Id): counted once.
    await bus.publish(js, states.message_subject(K.MESSAGE_EVENT_KIND_OPENED), opened,
                      f"{opened.event_id}:again")
    # A late SUBMITTED for a delivered message changes nothing.
    await pub.send(K.MESSAGE_EVENT_KIND_SUBMITTED, m1)
    # The dispatcher's hand-off to a gateway, published last.
    await pub.send(K.MESSAGE_EVENT_KIND_SENDING, m4, event_id=f"{m4}:sending:1", attempt=1)

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

    never_seen = uid()
    states_resp = await stub.BatchGetMessageStates(pb.BatchGetMessageStatesRequest(
        message_ids=[m1, m4.upper(), never_seen]), metadata=md)
    got = {s.message_id: (s.status, s.views, s.clicks, s.replies) for s in states_resp.states}
    assert got == {m1: (S.MESSAGE_STATUS_DELIVERED, 2, 1, 0),
                   m4: (S.MESSAGE_STATUS_SENDING, 0, 0, 0)}

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
    cid, m1 = uid(), uid()
    pub = Events(js, cid, "ws-stats-owner")
    await pub.send(K.MESSAGE_EVENT_KIND_SUBMITTED, m1)
    req = pb.GetCampaignStatsRequest(campaign_id=cid)
    st = await wait_for(lambda: stub.GetCampaignStats(req, metadata=ws("ws-stats-owner")),
                        lambda s: s.total == 1)
    assert st.sent == 1
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetCampaignStats(req, metadata=ws("ws-stats-intruder"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    resp = await stub.BatchGetMessageStates(
        pb.BatchGetMessageStatesRequest(message_ids=[m1]), metadata=ws("ws-stats-intruder"))
    assert list(resp.states) == []


async def test_unknown_campaign_is_not_found(stub: pb_grpc.StatsServiceStub) -> None:
    # Neither stats nor campaigns know it: NOT_FOUND, not a page of zeros.
    nobody = uid()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetCampaignStats(pb.GetCampaignStatsRequest(campaign_id=nobody),
                                    metadata=ws("ws-stats-intruder"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    watch = stub.WatchCampaignStats(pb.WatchCampaignStatsRequest(campaign_id=nobody),
                                    metadata=ws("ws-stats-intruder"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await watch.read()
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetCampaignStats(pb.GetCampaignStatsRequest(campaign_id="cmp-none"),
                                    metadata=ws("ws-stats-intruder"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(err.value)) == ["campaign_id"]


async def test_campaign_without_events_is_asked_of_campaigns(  # type: ignore[no-untyped-def]
        stub: pb_grpc.StatsServiceStub, campaigns: cgrpc.CampaignServiceStub,
        redis_client, prefix: str) -> None:
    cp = await campaigns.CreateCampaign(cpb.CreateCampaignRequest(draft=True, campaign=cpb.Campaign(
        name="stats lookup", channel=c.CHANNEL_SMS, sender="HERALD",
        content=cpb.Content(text="hello")), recipients=[c.Recipient(phone="+447700900001")]),
        metadata=ws("ws-stats-lookup"))
    # Known to campaigns, no message yet: zeros for its workspace...
    st = await stub.GetCampaignStats(pb.GetCampaignStatsRequest(campaign_id=cp.id.upper()),
                                     metadata=ws("ws-stats-lookup"))
    assert st.campaign_id == cp.id and st.total == 0 and st.delivery_rate == 0
    # ... and the positive answer is kept as the campaign's owner record.
    assert await redis_client.hget(f"{prefix}c:{cp.id}", "ws") == b"ws-stats-lookup"
    # Another workspace: campaigns says NOT_FOUND for it, and so does the record.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetCampaignStats(pb.GetCampaignStatsRequest(campaign_id=cp.id),
                                    metadata=ws("ws-stats-intruder"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_campaign_events_record_the_owner(js, stub: pb_grpc.StatsServiceStub) -> None:  # type: ignore[no-untyped-def]
    # A campaign campaigns does not know (this one never existed there): the campaign event
    # alone makes it known to stats, for its workspace only.
    cid = uid()
    ev = e.CampaignEvent(event_id=uid(), kind=e.CAMPAIGN_EVENT_KIND_STATUS_CHANGED, campaign_id=cid,
                         workspace_id="ws-stats-cev", status="BUILDING", previous_status="PENDING")
    await bus.publish(js, "events.campaign.status_changed", ev, ev.event_id)
    req = pb.GetCampaignStatsRequest(campaign_id=cid)
    st = await wait_for(lambda: stub.GetCampaignStats(req, metadata=ws("ws-stats-cev")), lambda s: True)
    assert st.campaign_id == cid and st.total == 0
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetCampaignStats(req, metadata=ws("ws-stats-intruder"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_retry_after_build_failure_matches_the_ledger(js, stub: pb_grpc.StatsServiceStub) -> None:  # type: ignore[no-untyped-def]
    cid, ok, bad = uid(), uid(), uid()
    pub = Events(js, cid, "ws-stats-retry")
    # The build: both queued (no attempt said), one failed at once (invalid address).
    await pub.send(K.MESSAGE_EVENT_KIND_QUEUED, ok, event_id=f"{ok}:queued")
    await pub.send(K.MESSAGE_EVENT_KIND_QUEUED, bad, event_id=f"{bad}:queued")
    await pub.send(K.MESSAGE_EVENT_KIND_FAILED, bad, event_id=f"{bad}:failed")
    await pub.send(K.MESSAGE_EVENT_KIND_SENDING, ok, event_id=f"{ok}:sending:1", attempt=1)
    await pub.send(K.MESSAGE_EVENT_KIND_SUBMITTED, ok, attempt=1)
    # RetryMessages: QUEUED again with attempt 2, then the dispatcher hands it over.
    await pub.send(K.MESSAGE_EVENT_KIND_QUEUED, bad, event_id=f"{bad}:queued:2", attempt=2)
    await pub.send(K.MESSAGE_EVENT_KIND_SENDING, bad, event_id=f"{bad}:sending:2", attempt=2)
    req = pb.GetCampaignStatsRequest(campaign_id=cid)
    st = await wait_for(lambda: stub.GetCampaignStats(req, metadata=ws("ws-stats-retry")),
                        lambda s: s.sending == 1)
    # What the ledger's Progress says for the same facts.
    assert (st.total, st.processed, st.sent, st.failed, st.queued, st.sending, st.submitted) == \
        (2, 1, 1, 0, 0, 1, 1)


async def test_watch_yields_now_and_after_each_change(js, stub: pb_grpc.StatsServiceStub) -> None:  # type: ignore[no-untyped-def]
    cid, m1, md = uid(), uid(), ws("ws-stats-watch")
    pub = Events(js, cid, "ws-stats-watch")
    await pub.send(K.MESSAGE_EVENT_KIND_QUEUED, m1)
    req = pb.GetCampaignStatsRequest(campaign_id=cid)
    await wait_for(lambda: stub.GetCampaignStats(req, metadata=md), lambda s: s.total == 1)
    call = stub.WatchCampaignStats(pb.WatchCampaignStatsRequest(campaign_id=cid, interval_ms=100),
                                   metadata=md)
    first = await asyncio.wait_for(call.read(), 10)
    assert first.campaign_id == cid and (first.total, first.queued) == (1, 1)
    await pub.send(K.MESSAGE_EVENT_KIND_SUBMITTED, m1)
    await pub.send(K.MESSAGE_EVENT_KIND_DELIVERED, m1)
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

def closed_port() -> int:
    """A port nothing listens on: the campaigns service is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    directory = CampaignDirectory(agg, f"127.0.0.1:{closed_port()}")
    rt = ServiceRuntime("stats-test")
    port = await rt.start_grpc([(pb_grpc.add_StatsServiceServicer_to_server,
                                 StatsServicer(agg, directory), "herald.v1.StatsService")])
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield pb_grpc.StatsServiceStub(ch), agg
    await rt.shutdown(0)
    await directory.close()


def bearer(token: str) -> tuple:
    return (("authorization", f"Bearer {token}"),)


async def test_master_reads_across_workspaces_admin_does_not(token_stub) -> None:  # type: ignore[no-untyped-def]
    stub, agg = token_stub
    cid, mid = uid(), uid()
    ev = e.MessageEvent(event_id="e1", kind=K.MESSAGE_EVENT_KIND_DELIVERED, message_id=mid,
                        campaign_id=cid, workspace_id="ws-a")
    assert await agg.apply_batch([ev], datetime.now(UTC)) == ["applied"]
    req = pb.GetCampaignStatsRequest(campaign_id=cid)
    assert (await stub.GetCampaignStats(req, metadata=bearer("tok-a"))).delivered == 1
    assert (await stub.GetCampaignStats(req, metadata=bearer("tok-master"))).delivered == 1
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetCampaignStats(req, metadata=bearer("tok-b"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    ids = pb.BatchGetMessageStatesRequest(message_ids=[mid])
    assert len((await stub.BatchGetMessageStates(ids, metadata=bearer("tok-master"))).states) == 1
    assert len((await stub.BatchGetMessageStates(ids, metadata=bearer("tok-b"))).states) == 0
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetCampaignStats(req)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_campaigns_unreachable_is_unavailable_not_zeros(token_stub) -> None:  # type: ignore[no-untyped-def]
    stub, _agg = token_stub
    req = pb.GetCampaignStatsRequest(campaign_id=uid())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetCampaignStats(req, metadata=bearer("tok-a"))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    watch = stub.WatchCampaignStats(pb.WatchCampaignStatsRequest(campaign_id=req.campaign_id),
                                    metadata=bearer("tok-a"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await watch.read()
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_invalid_arguments(token_stub) -> None:  # type: ignore[no-untyped-def]
    stub, agg = token_stub
    a = bearer("tok-a")

    async def violations(call: Awaitable[object]) -> dict[str, str]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        return field_violations(err.value)

    many = [uid() for _ in range(1001)]
    assert "message_ids" in await violations(stub.BatchGetMessageStates(
        pb.BatchGetMessageStatesRequest(message_ids=many), metadata=a))
    bad = await violations(stub.BatchGetMessageStates(pb.BatchGetMessageStatesRequest(
        message_ids=[uid(), "m1", "", uid(), "\x00' OR 1=1"]), metadata=a))
    assert list(bad) == ["message_ids[1]", "message_ids[2]", "message_ids[4]"]
    # A huge bad batch names its first offenders only.
    assert len(await violations(stub.BatchGetMessageStates(pb.BatchGetMessageStatesRequest(
        message_ids=["x"] * 1000), metadata=a))) == 20
    assert await violations(stub.GetCampaignStats(pb.GetCampaignStatsRequest(), metadata=a)) == \
        {"campaign_id": "required"}
    for cid in ("cmp-a", "1" * 37, "{" + uid() + "}", "\u00e9" * 36):
        assert list(await violations(stub.GetCampaignStats(
            pb.GetCampaignStatsRequest(campaign_id=cid), metadata=a))) == ["campaign_id"]
    # Watch: the same id checks, and interval_ms within 0 (default) .. one hour.
    cid, mid = uid(), uid()
    await agg.apply_batch([e.MessageEvent(event_id="q", kind=K.MESSAGE_EVENT_KIND_QUEUED,
                                          message_id=mid, campaign_id=cid, workspace_id="ws-a")],
                          datetime.now(UTC))
    for ms in (-1, 3_600_001, 2**31 - 1, -(2**31)):
        watch = stub.WatchCampaignStats(pb.WatchCampaignStatsRequest(campaign_id=cid, interval_ms=ms),
                                        metadata=a)
        assert list(await violations(watch.read())) == ["interval_ms"]
    watch = stub.WatchCampaignStats(pb.WatchCampaignStatsRequest(campaign_id="x"), metadata=a)
    assert list(await violations(watch.read())) == ["campaign_id"]
    for ms in (1, 3_600_000):
        watch = stub.WatchCampaignStats(pb.WatchCampaignStatsRequest(campaign_id=cid, interval_ms=ms),
                                        metadata=a)
        assert (await watch.read()).queued == 1
        watch.cancel()
    ok = await stub.BatchGetMessageStates(pb.BatchGetMessageStatesRequest(
        message_ids=[uid() for _ in range(1000)]), metadata=a)
    assert list(ok.states) == []
