"""The demo driven purely over gRPC (and the tracking HTTP endpoint, as a mail client
would): one SMS campaign and one email campaign, then their stats. Shared by `make run`
and the end-to-end test."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import campaigns_pb2_grpc as cgrpc
from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2 as rpb
from herald.v1 import recipients_pb2_grpc as rgrpc
from herald.v1 import stats_pb2 as spb
from herald.v1 import stats_pb2_grpc as sgrpc

WORKSPACE = (("x-herald-workspace", "demo"),)
PIXEL = re.compile(r'src="(https?://[^"]+/o/[^"]+)"')
LINK = re.compile(r'href="(https?://[^"]+/c/[^"]+)"')
TERMINAL = {cpb.CAMPAIGN_STATUS_DONE, cpb.CAMPAIGN_STATUS_FAILED, cpb.CAMPAIGN_STATUS_CANCELLED,
            cpb.CAMPAIGN_STATUS_EXPIRED}

EMAIL_HTML = """<html><body>
<h1>Hello {{ first_name }}!</h1>
<p>Our autumn offers are here. <a href="https://shop.example.com/offers?c=autumn">See the offers</a></p>
<p>Questions? <a href="https://help.example.com/">Visit the help centre</a></p>
</body></html>"""


@dataclass
class Clients:
    campaigns: cgrpc.CampaignServiceStub
    recipients: rgrpc.RecipientServiceStub
    stats: sgrpc.StatsServiceStub
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    @classmethod
    def connect(cls, campaigns: str, recipients: str, stats: str) -> Clients:
        chans = [grpc.aio.insecure_channel(a) for a in (campaigns, recipients, stats)]
        return cls(cgrpc.CampaignServiceStub(chans[0]), rgrpc.RecipientServiceStub(chans[1]),
                   sgrpc.StatsServiceStub(chans[2]), chans)

    async def close(self) -> None:
        for ch in self.channels:
            await ch.close()


@dataclass
class Result:
    sms: cpb.Campaign
    email: cpb.Campaign
    sms_stats: spb.CampaignStats
    email_stats: spb.CampaignStats
    ok: bool


async def wait_terminal(cl: Clients, campaign_id: str, timeout: float = 180.0,
                        md: tuple = WORKSPACE) -> cpb.Campaign:
    deadline = time.monotonic() + timeout
    while True:
        cp = await cl.campaigns.GetCampaign(cpb.GetCampaignRequest(id=campaign_id), metadata=md)
        if cp.status in TERMINAL:
            return cp
        if time.monotonic() > deadline:
            raise TimeoutError(f"campaign {campaign_id} still {cpb.CampaignStatus.Name(cp.status)} "
                               f"after {timeout}s: {cp.progress}")
        await asyncio.sleep(0.25)


async def wait_stats(cl: Clients, campaign_id: str, ready: Any, timeout: float = 60.0,
                     md: tuple = WORKSPACE) -> spb.CampaignStats:
    """Stats are eventually consistent with the ledger: poll until `ready(stats)`."""
    deadline = time.monotonic() + timeout
    while True:
        st = await cl.stats.GetCampaignStats(spb.GetCampaignStatsRequest(campaign_id=campaign_id), metadata=md)
        if ready(st) or time.monotonic() > deadline:
            return st
        await asyncio.sleep(0.25)


async def sms_campaign(cl: Clients, n: int, md: tuple = WORKSPACE) -> str:
    if not 0 < n <= 1000:
        raise ValueError("the demo uses +44 7700 900000..900999 (Ofcom drama range): 1..1000")
    recipients = [c.Recipient(phone=f"+447700900{i:03d}", first_name=f"Demo{i}") for i in range(n)]
    cp = await cl.campaigns.CreateCampaign(cpb.CreateCampaignRequest(
        request_id=f"demo-sms-{time.time_ns()}", recipients=recipients,
        campaign=cpb.Campaign(name="Demo SMS", channel=c.CHANNEL_SMS, sender="HERALD", auto_start=True,
                              content=cpb.Content(text="Hi {{ first_name }}, your code is 1234."))),
        metadata=md)
    await cl.campaigns.ApproveCampaign(cpb.CampaignActionRequest(id=cp.id, note="demo"), metadata=md)
    return cp.id


async def email_campaign(cl: Clients, n: int, md: tuple = WORKSPACE) -> str:
    cat = await cl.recipients.CreateCategory(rpb.CreateCategoryRequest(name=f"newsletter-{time.time_ns()}"),
                                             metadata=md)
    contacts = [rpb.Contact(email=f"reader{i:04d}@example.com", first_name=f"Reader{i}",
                            external_id=f"reader-{i}", category_ids=[cat.id]) for i in range(n)]
    up = await cl.recipients.UpsertContacts(rpb.UpsertContactsRequest(contacts=contacts), metadata=md)
    if up.rejected:
        raise RuntimeError(f"demo contacts rejected: {[r.error for r in up.results if r.error][:3]}")
    cp = await cl.campaigns.CreateCampaign(cpb.CreateCampaignRequest(
        request_id=f"demo-email-{time.time_ns()}",
        campaign=cpb.Campaign(name="Demo newsletter", channel=c.CHANNEL_EMAIL,
                              sender="Herald Demo <news@example.com>", auto_start=True,
                              category_ids=[cat.id],
                              content=cpb.Content(subject="Autumn offers for {{ first_name }}",
                                                  html=EMAIL_HTML,
                                                  text="Hello {{ first_name }}, see https://shop.example.com/offers"))),
        metadata=md)
    await cl.campaigns.ApproveCampaign(cpb.CampaignActionRequest(id=cp.id, note="demo"), metadata=md)
    return cp.id


def tracking_urls(sink_dir: Path) -> list[tuple[str, str, str]]:
    """(recipient, pixel URL, first link URL) of every mail the sink accepted."""
    out = []
    for path in sorted(sink_dir.rglob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        body = msg.get_body(("html",))
        html = body.get_content() if body is not None else ""
        pixel, link = PIXEL.search(html), LINK.search(html)
        if pixel and link:
            out.append((str(msg["To"]), pixel.group(1), link.group(1)))
    return out


async def open_and_click(urls: list[tuple[str, str, str]]) -> None:
    """Behave like each recipient's mail client: load the pixel once, click once."""
    async with aiohttp.ClientSession(headers={"User-Agent": "Mozilla/5.0 (demo mail client)"}) as http:
        sem = asyncio.Semaphore(32)

        async def one(pixel: str, link: str) -> None:
            async with sem:
                async with http.get(pixel) as r:
                    await r.read()
                    r.raise_for_status()
                async with http.get(link, allow_redirects=False) as r:
                    if r.status not in (301, 302, 303, 307, 308):
                        raise RuntimeError(f"click {link} answered {r.status}")

        await asyncio.gather(*(one(p, lk) for _to, p, lk in urls))


async def wait_mail(sink_dir: Path, n: int, timeout: float = 30.0) -> list[tuple[str, str, str]]:
    deadline = time.monotonic() + timeout
    while True:
        urls = tracking_urls(sink_dir)
        if len(urls) >= n or time.monotonic() > deadline:
            return urls
        await asyncio.sleep(0.25)


async def run(stack: Any, sms_n: int, email_n: int, console: Any, md: tuple = WORKSPACE,
              external_smsc: bool = False, external_smtp: bool = False) -> Result:
    """md: the calls' metadata (a workspace in development mode, else a bearer token).
    With an external SMSC the receipts are the carrier's, and with an external relay there
    is no mail to open here: the demo then checks that every message was sent."""
    cl = Clients.connect(stack.addr("campaigns"), stack.addr("recipients"), stack.addr("stats"))
    try:
        t0 = time.monotonic()
        sms_id = await sms_campaign(cl, sms_n, md=md)
        email_id = await email_campaign(cl, email_n, md=md)
        console.print(f"campaigns created: SMS {sms_id}, email {email_id}")
        sms = await wait_terminal(cl, sms_id, md=md)
        console.print(f"SMS campaign {cpb.CampaignStatus.Name(sms.status)} in {time.monotonic() - t0:.1f}s")
        em = await wait_terminal(cl, email_id, md=md)
        console.print(f"email campaign {cpb.CampaignStatus.Name(em.status)} in {time.monotonic() - t0:.1f}s")
        if external_smtp:
            console.print("mail went to the external relay: no opens or clicks simulated")
        else:
            urls = await wait_mail(stack.sink_dir, email_n)
            await open_and_click(urls)
            console.print(f"opened and clicked {len(urls)} emails once each")
        sms_ready = (lambda s: s.processed >= sms_n) if external_smsc else (lambda s: s.delivered >= sms_n)
        sms_st = await wait_stats(cl, sms_id, sms_ready, md=md)
        em_st = await wait_stats(cl, email_id, (lambda s: s.sent >= email_n) if external_smtp else
                                 (lambda s: s.viewed >= email_n and s.clicked >= email_n), md=md)
        sms = await cl.campaigns.GetCampaign(cpb.GetCampaignRequest(id=sms_id), metadata=md)
        em = await cl.campaigns.GetCampaign(cpb.GetCampaignRequest(id=email_id), metadata=md)
        print_stats(console, sms, sms_st, em, em_st)
        ok = (sms.status == cpb.CAMPAIGN_STATUS_DONE and em.status == cpb.CAMPAIGN_STATUS_DONE
              and em_st.sent == email_n
              and (external_smsc or sms_st.delivered == sms_n)
              and (external_smtp or (em_st.viewed == email_n and em_st.clicked == email_n)))
        return Result(sms, em, sms_st, em_st, ok)
    finally:
        await cl.close()


def print_stats(console: Any, sms: cpb.Campaign, sms_st: spb.CampaignStats,
                em: cpb.Campaign, em_st: spb.CampaignStats) -> None:
    from rich.table import Table

    # Metrics as rows so the table fits an 80-column terminal.
    table = Table(title="demo campaigns (StatsService.GetCampaignStats)")
    table.add_column("metric")
    table.add_column(f"SMS {sms.id[:8]}", justify="right")
    table.add_column(f"email {em.id[:8]}", justify="right")
    table.add_row("status", *(cpb.CampaignStatus.Name(cp.status).removeprefix("CAMPAIGN_STATUS_")
                              for cp in (sms, em)))
    for f in ("total", "sent", "delivered", "failed", "viewed", "views", "clicked", "clicks"):
        table.add_row(f, str(getattr(sms_st, f)), str(getattr(em_st, f)))
    console.print(table)
