"""Every metric the Grafana dashboard and the alert rules query is exported by a running
Herald: the whole stack on loopback runs a small SMS and email campaign (so labelled series
exist), then every process's /metrics is scraped."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from herald.v1 import campaigns_pb2 as cpb

from cli import demo
from cli.devstack import Stack
from tests.deploy import monitoring as m

PROCESSES = ("campaigns", "recipients", "stats", "smpp-gateway", "email-gateway")
SMS, EMAILS = 5, 3


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    st = Stack(Path(tmp_path_factory.mktemp("monitoring-stack")))
    st.start()
    yield st
    st.stop()


async def scrape(stack: Stack) -> dict[str, str]:
    async with aiohttp.ClientSession() as http:
        async def one(name: str) -> str:
            port = stack.procs[name].info["metrics_port"]
            async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                assert r.status == 200, name
                return await r.text()
        return dict(zip(PROCESSES, await asyncio.gather(*(one(n) for n in PROCESSES)), strict=True))


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the one sample of `name` with exactly these labels (0 when absent)."""
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        if not series.startswith(name + "{") and series != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', series))
        if found == labels:
            return float(value)
    return 0.0


@pytest.mark.timeout(120)
async def test_dashboard_and_alerts_query_exported_metrics(stack: Stack) -> None:
    cl = demo.Clients.connect(stack.addr("campaigns"), stack.addr("recipients"), stack.addr("stats"))
    try:
        sms_id = await demo.sms_campaign(cl, SMS)
        email_id = await demo.email_campaign(cl, EMAILS)
        for cid in (sms_id, email_id):
            cp = await demo.wait_terminal(cl, cid, timeout=45)
            assert cp.status == cpb.CAMPAIGN_STATUS_DONE, cp
        await demo.open_and_click(await demo.wait_mail(stack.sink_dir, EMAILS, timeout=15))
        await demo.wait_stats(cl, sms_id, lambda s: s.delivered >= SMS, timeout=20)
        await demo.wait_stats(cl, email_id, lambda s: s.clicked >= EMAILS, timeout=20)
    finally:
        await cl.close()
    texts = await scrape(stack)

    exported = set().union(*(m.exported_names(t) for t in texts.values()))
    queried = {name: sorted(src for src, exprs in (("dashboard", m.dashboard_exprs()),
                                                  ("rules", [a["expr"] for a in m.alerts()]))
                            if any(name in m.metric_names(e) for e in exprs))
               for e in [*m.dashboard_exprs(), *(a["expr"] for a in m.alerts())]
               for name in m.metric_names(e)}
    missing = {n: where for n, where in queried.items() if n not in exported and n not in m.SCRAPE_SERIES}
    assert not missing, f"queried but exported by no process: {missing}"

    # Each message counted once when it reached its final status, whatever the events seen.
    camp = texts["campaigns"]
    assert sample(camp, "herald_campaign_messages_total", channel="sms", status="delivered") == SMS
    assert sample(camp, "herald_campaign_messages_total", channel="email", status="submitted") == EMAILS
    assert sample(camp, "herald_campaign_messages_total", channel="sms", status="failed") == 0
    # Build info names each process as its Deployment does (the alerts' job label).
    for name, text in texts.items():
        assert re.search(rf'^herald_build_info\{{.*process="{name}".*\}} 1\.0$', text, re.M), name
    smpp = texts["smpp-gateway"]
    assert sample(smpp, "herald_smpp_binds_up", route="default") >= 1
    assert sample(smpp, "herald_smpp_window_size", route="default") >= 1
