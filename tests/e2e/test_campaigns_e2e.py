"""End to end: every Herald process as a real process on loopback (NATS, Redis, SMSC
simulator, SMTP sink, services, gateways); both campaigns driven purely over gRPC (and the
tracking HTTP endpoint, as a mail client would); the ledger and the stats must agree
message by message."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import common_pb2 as c
from herald.v1 import stats_pb2 as spb

from cli import demo
from cli.devstack import Stack

S = c.MessageStatus
MD = demo.WORKSPACE
SERVICES = {"campaigns": "herald.v1.CampaignService", "recipients": "herald.v1.RecipientService",
            "stats": "herald.v1.StatsService", "smpp-gateway": None, "email-gateway": None}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    st = Stack(Path(tmp_path_factory.mktemp("stack")))
    st.start()
    yield st
    st.stop()


@pytest.fixture
async def clients(stack: Stack):  # type: ignore[no-untyped-def]
    cl = demo.Clients.connect(stack.addr("campaigns"), stack.addr("recipients"), stack.addr("stats"))
    yield cl
    await cl.close()


async def all_messages(cl: demo.Clients, campaign_id: str) -> list[cpb.Message]:
    out, token = [], ""
    while True:
        page = await cl.campaigns.ListMessages(cpb.ListMessagesRequest(
            campaign_id=campaign_id, page_size=500, page_token=token), metadata=MD)
        out.extend(page.messages)
        token = page.next_page_token
        if not token:
            return out


async def assert_ledger_matches_stats(cl: demo.Clients, campaign_id: str) -> spb.CampaignStats:
    msgs = await all_messages(cl, campaign_id)
    states = await cl.stats.BatchGetMessageStates(
        spb.BatchGetMessageStatesRequest(message_ids=[m.id for m in msgs]), metadata=MD)
    by_id = {s.message_id: s for s in states.states}
    for m in msgs:
        s = by_id[m.id]
        assert (s.status, s.views, s.clicks) == (m.status, m.views, m.clicks), m.id
    st = await cl.stats.GetCampaignStats(spb.GetCampaignStatsRequest(campaign_id=campaign_id), metadata=MD)
    counts = Counter(m.status for m in msgs)
    assert st.total == len(msgs)
    assert st.delivered == counts[S.MESSAGE_STATUS_DELIVERED]
    assert st.failed == counts[S.MESSAGE_STATUS_FAILED]
    assert st.sent == sum(1 for m in msgs if m.HasField("sent_at"))
    assert st.viewed == sum(1 for m in msgs if m.views > 0)
    assert st.views == sum(m.views for m in msgs)
    assert st.clicked == sum(1 for m in msgs if m.clicks > 0)
    return st


async def test_sms_campaign_end_to_end(clients: demo.Clients) -> None:
    def request(extra: list[c.Recipient]) -> cpb.CreateCampaignRequest:
        return cpb.CreateCampaignRequest(
            campaign=cpb.Campaign(name="e2e sms", channel=c.CHANNEL_SMS, sender="HERALD", auto_start=True,
                                  content=cpb.Content(text="Your parcel arrives today")),
            recipients=[c.Recipient(phone=f"+447700900{i:03d}") for i in range(300)] + extra)

    with pytest.raises(grpc.aio.AioRpcError) as err:  # too short: refused before anything is stored
        await clients.campaigns.CreateCampaign(request([c.Recipient(phone="+44 7700 9")]), metadata=MD)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    cp = await clients.campaigns.CreateCampaign(request([]), metadata=MD)
    await clients.campaigns.ApproveCampaign(cpb.CampaignActionRequest(id=cp.id), metadata=MD)
    done = await demo.wait_terminal(clients, cp.id, timeout=120)
    assert done.status == cpb.CAMPAIGN_STATUS_DONE
    assert done.progress.total == 300 and done.progress.delivered == 300 and done.progress.errors == 0
    assert done.progress.sent == 300 and done.outcome == cpb.CAMPAIGN_OUTCOME_SENT
    msgs = await all_messages(clients, cp.id)
    delivered = [m for m in msgs if m.status == S.MESSAGE_STATUS_DELIVERED]
    assert len(delivered) == 300
    assert all(m.carrier_result == "DELIVRD" and m.provider_message_id and m.HasField("delivered_at")
               and m.HasField("sent_at") and m.route for m in delivered)
    assert {(m.stage, m.result) for m in msgs} == {(cpb.MESSAGE_STAGE_SUBMITTED, cpb.DELIVERY_RESULT_DELIVERED)}
    assert {m.content_preview for m in msgs} == {"Your parcel arrives today"}
    await demo.wait_stats(clients, cp.id, lambda s: s.delivered == 300, md=MD)
    st = await assert_ledger_matches_stats(clients, cp.id)
    assert (st.total, st.sent, st.delivered, st.failed) == (300, 300, 300, 0)


async def test_email_campaign_end_to_end(clients: demo.Clients, stack: Stack) -> None:
    cid = await demo.email_campaign(clients, 200)  # as many as `make run` opens from one IP
    done = await demo.wait_terminal(clients, cid, timeout=120)
    assert done.category_names[0].startswith("newsletter-")  # named by the recipients service
    assert done.status == cpb.CAMPAIGN_STATUS_DONE and done.progress.sent == 200
    urls = await demo.wait_mail(stack.sink_dir, 200)
    assert len(urls) == 200
    await demo.open_and_click(urls)
    # One reader opens three more times: views grow, unique openers do not.
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            async with http.get(urls[0][1]) as r:
                assert r.status == 200 and r.headers["Content-Type"] == "image/gif"
    await demo.wait_stats(clients, cid, lambda s: s.views >= 203 and s.clicked >= 200, md=MD)
    await asyncio.sleep(0.5)  # let the ledger consumer catch up with the same events
    for _ in range(40):
        msgs = await all_messages(clients, cid)
        if sum(m.views for m in msgs) >= 203 and sum(m.clicks for m in msgs) >= 200:
            break
        await asyncio.sleep(0.25)
    st = await assert_ledger_matches_stats(clients, cid)
    assert (st.total, st.sent, st.viewed, st.views, st.clicked, st.clicks) == (200, 200, 200, 203, 200, 200)


async def test_every_process_is_healthy_reflectable_and_measured(stack: Stack) -> None:
    for name, service in SERVICES.items():
        async with grpc.aio.insecure_channel(stack.addr(name)) as ch:
            resp = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
            assert resp.status == health_pb2.HealthCheckResponse.SERVING, name
            stream = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
            names = [s.name async for r in stream for s in r.list_services_response.service]
            assert "grpc.health.v1.Health" in names, name
            if service:
                assert service in names, name
        port = stack.procs[name].info["metrics_port"]
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
            text = await r.text()
        moved = [ln for ln in text.splitlines()
                 if ln.startswith("herald_") and "_total" in ln and not ln.endswith(" 0.0")]
        assert moved, f"{name}: no herald_ counter moved"


def test_operator_cli_against_the_stack(stack: Stack, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "HERALD_CAMPAIGNS_ADDR": stack.addr("campaigns"),
           "HERALD_STATS_ADDR": stack.addr("stats"), "COLUMNS": "200"}

    def herald(*args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "cli.main", "--workspace", "demo", *args],
                             env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    listing = herald("list", "--filter", "status=DONE")
    assert "DONE" in listing and "SMS" in listing
    kpis = herald("kpis")
    assert "awaiting moderation" in kpis
    campaign_id = next(line.split()[1] for line in listing.splitlines()
                       if line.startswith("│") and "SMS" in line)
    herald("stats", campaign_id)
    target = tmp_path / "export.csv"
    assert "rows ->" in herald("export", campaign_id, "-o", str(target))
    assert target.read_text().startswith("message_id,recipient")
    bad = subprocess.run([sys.executable, "-m", "cli.main", "--workspace", "other", "get", campaign_id],
                         env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "NOT_FOUND" in bad.stdout
