"""ReconcileCampaign over the whole stack (every process real: NATS, Redis, SMSC simulator,
services, gateways): a finished campaign is final with nothing differing; stats state lost
in Redis is listed message by message and the figures are not final; repair rebuilds the
stats from the ledger; the CLI prints the verdict; validation, tenancy and roles."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import campaigns_pb2_grpc as cgrpc
from herald.v1 import common_pb2 as c

from cli import demo, procs
from cli.devstack import Stack
from shared import cache

S = c.MessageStatus
MD = demo.WORKSPACE
N = 40
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # The stack starts campaigns before stats: stats gets a port chosen up front, so campaigns
    # can be told where to find it (HERALD_STATS_ADDR).
    stats_addr = f"127.0.0.1:{procs.free_port()}"
    st = Stack(Path(tmp_path_factory.mktemp("reconcile-stack")),
               module_env={"campaigns": {"HERALD_STATS_ADDR": stats_addr},
                           "stats": {"HERALD_GRPC_ADDR": stats_addr}})
    st.start()
    yield st
    st.stop()


@pytest.fixture
async def clients(stack: Stack) -> AsyncIterator[demo.Clients]:
    cl = demo.Clients.connect(stack.addr("campaigns"), stack.addr("recipients"), stack.addr("stats"))
    yield cl
    await cl.close()


@pytest.fixture(scope="module")
def finished(stack: Stack) -> str:
    """A DONE SMS campaign whose stats have caught up with the ledger."""
    import asyncio

    async def run() -> str:
        cl = demo.Clients.connect(stack.addr("campaigns"), stack.addr("recipients"), stack.addr("stats"))
        try:
            cid = await demo.sms_campaign(cl, N)
            done = await demo.wait_terminal(cl, cid, timeout=120)
            assert done.status == cpb.CAMPAIGN_STATUS_DONE and done.progress.delivered == N
            st = await demo.wait_stats(cl, cid, lambda s: s.delivered == N)
            assert st.delivered == N
            return cid
        finally:
            await cl.close()

    return asyncio.run(run())


async def reconcile(cl: demo.Clients, cid: str, **kw: object) -> cpb.ReconcileReport:
    return await cl.campaigns.ReconcileCampaign(cpb.ReconcileCampaignRequest(campaign_id=cid, **kw),
                                                metadata=MD)


async def message_ids(cl: demo.Clients, cid: str) -> list[str]:
    page = await cl.campaigns.ListMessages(cpb.ListMessagesRequest(campaign_id=cid, page_size=N),
                                           metadata=MD)
    return sorted(m.id for m in page.messages)


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HERALD_CAMPAIGNS_ADDR": stack.addr("campaigns"),
           "HERALD_STATS_ADDR": stack.addr("stats"), "HERALD_TOKEN": "", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "cli.main", "--workspace", "demo", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


async def test_a_finished_campaign_is_final(finished: str, clients: demo.Clients, stack: Stack) -> None:
    rep = await reconcile(clients, finished)
    assert rep.final and not rep.repaired
    assert (rep.compared, rep.differing, list(rep.differences)) == (N, 0, [])
    assert rep.ledger == rep.stats
    assert (rep.ledger.total, rep.ledger.sent, rep.ledger.delivered) == (N, N, N)
    out = cli(stack, "reconcile", finished)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "FINAL" in out.stdout and "NOT FINAL" not in out.stdout
    assert f"{N} messages compared, 0 differ" in out.stdout


async def test_lost_stats_are_listed_then_repaired(finished: str, clients: demo.Clients,
                                                   stack: Stack) -> None:
    ids = await message_ids(clients, finished)
    lost = ids[:3]
    redis = cache.connect(stack.procs["redis"].info["url"])
    try:  # Redis lost these messages' states (e.g. restarted without its append-only file)
        assert await redis.delete(*(f"herald:stats:m:{m}" for m in lost)) == 3
    finally:
        await redis.aclose()
    rep = await reconcile(clients, finished, max_differences=2)
    assert not rep.final and rep.compared == N and rep.differing == 3
    assert [(d.message_id, d.ledger_status, d.stats_status) for d in rep.differences] == [
        (m, S.MESSAGE_STATUS_DELIVERED, S.MESSAGE_STATUS_UNSPECIFIED) for m in lost[:2]]
    out = cli(stack, "reconcile", finished)
    assert out.returncode == 2 and "NOT FINAL" in out.stdout, out.stdout + out.stderr
    assert all(m in out.stdout for m in lost)

    rid = f"repair-{uuid.uuid4().hex}"
    fixed = await reconcile(clients, finished, repair=True, request_id=rid)
    assert fixed.repaired and fixed.final
    assert (fixed.compared, fixed.differing) == (N, 0) and fixed.ledger == fixed.stats
    assert await reconcile(clients, finished, repair=True, request_id=rid) == fixed  # a retry
    with pytest.raises(grpc.aio.AioRpcError) as err:  # the same request_id on another call
        await reconcile(clients, finished, repair=True, request_id=rid, max_differences=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_everything_lost_is_not_final_until_repaired(finished: str, clients: demo.Clients,
                                                           stack: Stack) -> None:
    redis = cache.connect(stack.procs["redis"].info["url"])
    try:
        await redis.flushall()
    finally:
        await redis.aclose()
    rep = await reconcile(clients, finished)
    assert not rep.final and rep.differing == N and rep.stats.total == 0
    fixed = await reconcile(clients, finished, repair=True)
    assert fixed.final and fixed.differing == 0 and fixed.ledger == fixed.stats


async def test_refusals(finished: str, clients: demo.Clients, stack: Stack) -> None:
    async def code(req: cpb.ReconcileCampaignRequest, md: tuple = MD) -> grpc.StatusCode:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await clients.campaigns.ReconcileCampaign(req, metadata=md)
        return err.value.code()

    assert await code(cpb.ReconcileCampaignRequest(campaign_id="nope")) == grpc.StatusCode.INVALID_ARGUMENT
    assert await code(cpb.ReconcileCampaignRequest(campaign_id=finished, max_differences=-1)) \
        == grpc.StatusCode.INVALID_ARGUMENT
    # Another workspace's campaign does not exist for this caller.
    assert await code(cpb.ReconcileCampaignRequest(campaign_id=finished),
                      (("x-herald-workspace", "someone-else"),)) == grpc.StatusCode.NOT_FOUND
    assert await code(cpb.ReconcileCampaignRequest(campaign_id=str(uuid.uuid4()))) == grpc.StatusCode.NOT_FOUND


async def test_stats_unreachable_is_unavailable(finished: str, stack: Stack) -> None:
    """A campaigns process whose stats address answers nothing (a port just freed)."""
    work = stack.workdir / f"campaigns-nostats-{uuid.uuid4().hex[:6]}"
    work.mkdir()
    db_url = stack.db_url.replace("{service}", "campaigns")
    proc = procs.start_module("campaigns-nostats", "services.campaigns", work, {
        **stack.env(), "HERALD_DB_URL": db_url, "HERALD_STATS_ADDR": f"127.0.0.1:{procs.free_port()}",
        "HERALD_RECIPIENTS_ADDR": stack.addr("recipients")})
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{proc.info['grpc_port']}") as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await cgrpc.CampaignServiceStub(ch).ReconcileCampaign(
                    cpb.ReconcileCampaignRequest(campaign_id=finished), metadata=MD)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        proc.stop()
