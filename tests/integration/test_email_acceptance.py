"""Email gateway features over real servers: the gateway (DKIM key, VERP domain, bounce server)
and the SMTP sink as processes, the recipients service (SQLite) and the stats service as
processes, real SMTP into the bounce server, real HTTP on the tracking endpoint."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import dkim
import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from herald.v1 import recipients_pb2 as rpb
from herald.v1 import recipients_pb2_grpc as rpb_grpc
from herald.v1 import stats_pb2 as spb
from herald.v1 import stats_pb2_grpc as spb_grpc

from cli import procs
from gateways.email import dkimsign
from gateways.email.smtp_pool import SmtpConfig, SmtpConnection
from tests.integration import test_email_gateway as gw
from tests.integration.test_email_gateway import Events, eml, html_of, make_job, publish

events = gw.events  # the module-scoped fixture collecting everything on events.>

K = e.MessageEventKind
F = c.FailureCategory

pytestmark = pytest.mark.timeout(120)
WS = (("x-herald-workspace", "ws-it"),)


@pytest.fixture(scope="module")
def accept_stack(tmp_path_factory: pytest.TempPathFactory, nats_url: str,
                 redis_url: str) -> Iterator[dict[str, Any]]:
    work: Path = tmp_path_factory.mktemp("email-accept")
    # A throwaway key, made here and never committed.
    pem = rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    (work / "dkim.pem").write_bytes(pem)
    started: list[procs.Proc] = []
    try:
        sink = procs.start_module("email-sink-acc", "gateways.email.sink", work,
                                  {"HERALD_SINK_DIR": str(work / "sink")})
        started.append(sink)
        recipients = procs.start_module("recipients-acc", "services.recipients", work, {
            "HERALD_DB_URL": f"sqlite+aiosqlite:///{work / 'recipients.db'}",
            "HERALD_NATS_URL": nats_url, "HERALD_GRPC_ADDR": "127.0.0.1:0",
            "HERALD_METRICS_ADDR": "127.0.0.1:0", "HERALD_TOKENS_FILE": ""})
        started.append(recipients)
        tag = uuid.uuid4().hex[:8]
        stats = procs.start_module("stats-acc", "services.stats", work, {
            "HERALD_NATS_URL": nats_url, "HERALD_REDIS_URL": redis_url,
            "HERALD_GRPC_ADDR": "127.0.0.1:0", "HERALD_METRICS_ADDR": "127.0.0.1:0",
            "HERALD_TOKENS_FILE": "", "HERALD_STATS_PREFIX": f"acc{tag}:",
            "HERALD_STATS_DURABLE": f"stats-acc-{tag}"})
        started.append(stats)
        gateway = procs.start_module("email-gateway-acc", "gateways.email", work, {
            "HERALD_NATS_URL": nats_url, "HERALD_REDIS_URL": redis_url,
            "HERALD_SMTP_HOST": "127.0.0.1", "HERALD_SMTP_PORT": str(sink.info["smtp_port"]),
            "HERALD_SMTP_POOL_SIZE": "2", "HERALD_SMTP_MAX_ATTEMPTS": "3",
            "HERALD_SMTP_RETRY_BASE": "0.2", "HERALD_TRACKING_KEYS": "it-key-new,it-key-old",
            "HERALD_TRACKING_TRUST_FORWARDED": "true", "HERALD_TRACKING_RATE": "5",
            "HERALD_TRACKING_BURST": "200",
            "HERALD_DKIM_KEY_FILE": str(work / "dkim.pem"), "HERALD_DKIM_SELECTOR": "it",
            "HERALD_VERP_DOMAIN": "bounces.example.com"})
        started.append(gateway)
        yield {"sink_dir": work / "sink", "url": gateway.info["tracking_url"],
               "bounce_port": gateway.info["bounce_port"], "gateway": gateway,
               "metrics_port": gateway.info["metrics_port"], "dns": dkimsign.public_dns_record(pem),
               "recipients": recipients.info["grpc_port"], "stats": stats.info["grpc_port"]}
    finally:
        for p in reversed(started):
            p.stop()


async def sent(stack: dict[str, Any], events: Events, js: Any, to: str,
               campaign: str = "c-email-it") -> tuple[e.MessageJob, bytes]:
    job = make_job(to)
    job.campaign_id = campaign
    await publish(js, job)
    await events.wait(lambda: events.of(job.message_id, K.MESSAGE_EVENT_KIND_SUBMITTED))
    [raw] = await eml(stack["sink_dir"], job.message_id)
    return job, raw


def verify(raw: bytes, record: str) -> bool:
    return bool(dkim.verify(raw, dnsfunc=lambda name, timeout=5: record.encode()))


async def test_dkim_signature_verifies_and_covers_list_unsubscribe(
        accept_stack: dict[str, Any], events: Events, js: Any) -> None:
    _job, raw = await sent(accept_stack, events, js, "dkim-reader@example.com")
    assert verify(raw, accept_stack["dns"])
    msg, _html = html_of(raw)
    sig = " ".join(str(msg["DKIM-Signature"]).split())
    assert "d=example.com" in sig and "s=it" in sig and "a=rsa-sha256" in sig
    signed = re.search(r"h=([^;]+);", sig).group(1).replace(" ", "").split(":")  # type: ignore[union-attr]
    assert {"from", "subject", "list-unsubscribe", "list-unsubscribe-post"} <= set(signed)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert re.match(r"<https?://[^>]+/u/[^>]+>,\s*<mailto:", str(msg["List-Unsubscribe"]))
    # a changed signed header or body breaks it
    assert not verify(raw.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
                                  b"List-Unsubscribe-Post: List-Unsubscribe=Nope"), accept_stack["dns"])
    assert not verify(raw.replace(b"Hi Ada", b"Hi Eve"), accept_stack["dns"])


def dsn(verp: str, final: str, status: str, diagnostic: str, action: str = "failed") -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.net\r\n"
        f"To: {verp}\r\nSubject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {final}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Return-Path: <{verp}>\r\nTo: {final}\r\nSubject: Hello Ada\r\n\r\n"
        "--B--\r\n").encode()


def arf(verp: str, rcpt: str) -> bytes:
    return (
        "From: fbl@isp.example.net\r\nTo: fbl@bounces.example.com\r\nSubject: complaint\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; '
        'boundary="A"\r\n\r\n'
        "--A\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n"
        "--A\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\nUser-Agent: ISP-FBL/1.0\r\nVersion: 1\r\n\r\n"
        "--A\r\nContent-Type: message/rfc822\r\n\r\n"
        f"Return-Path: <{verp}>\r\nTo: {rcpt}\r\nSubject: Hello Ada\r\n\r\nHi Ada\r\n"
        "--A--\r\n").encode()


async def inbound(stack: dict[str, Any], rcpt: str, data: bytes) -> None:
    # a DSN comes from the null sender: MAIL FROM:<>
    conn = SmtpConnection(SmtpConfig("127.0.0.1", stack["bounce_port"], timeout=10, helo="mx.example.net"))
    await conn.connect()
    try:
        reply = await conn.send("", rcpt, data)
    finally:
        await conn.quit()
    assert reply.startswith("2.0.0")


def return_path(raw: bytes) -> str:
    msg, _ = html_of(raw)
    return str(msg["Return-Path"]).strip("<>")


@pytest.fixture(scope="module")
async def recipients(accept_stack: dict[str, Any]) -> AsyncIterator[rpb_grpc.RecipientServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{accept_stack['recipients']}") as ch:
        yield rpb_grpc.RecipientServiceStub(ch)


async def suppressed(stub: rpb_grpc.RecipientServiceStub, address: str) -> list[Any]:
    while True:
        found = [s for s in (await stub.ListSuppressions(
            rpb.ListSuppressionsRequest(page_size=1000), metadata=WS)).suppressions
            if s.address == address]
        if found:
            return found
        await asyncio.sleep(0.05)


async def test_dsn_5_1_1_fails_the_message_and_suppresses_the_address(
        accept_stack: dict[str, Any], events: Events, js: Any,
        recipients: rpb_grpc.RecipientServiceStub) -> None:
    to = f"gone-{uuid.uuid4().hex[:6]}@example.com"
    job, raw = await sent(accept_stack, events, js, to)
    verp = return_path(raw)
    assert verp.endswith("@bounces.example.com") and verp.startswith("b-")
    await inbound(accept_stack, verp, dsn(verp, to, "5.1.1",
                                          f"550 5.1.1 <{to}>: Recipient address rejected"))
    [ev] = await events.wait(lambda: events.of(job.message_id, K.MESSAGE_EVENT_KIND_BOUNCED))
    assert ev.status == c.MESSAGE_STATUS_FAILED and ev.error_code == "550"
    assert ev.error_description.startswith("bounced: 5.1.1 ")
    assert ev.failure_category == F.FAILURE_CATEGORY_INVALID_ADDRESS and ev.to == to
    [ce] = await events.wait(lambda: events.contact(job.message_id))
    assert ce.kind == e.CONTACT_EVENT_KIND_BOUNCED and ce.address == to and ce.reason == "5.1.1"
    [s] = await suppressed(recipients, to)
    assert s.channel == c.CHANNEL_EMAIL


async def test_soft_bounce_complaint_and_junk(
        accept_stack: dict[str, Any], events: Events, js: Any,
        recipients: rpb_grpc.RecipientServiceStub) -> None:
    job, raw = await sent(accept_stack, events, js, "soft@example.com")
    verp = return_path(raw)
    await inbound(accept_stack, verp, dsn(verp, job.to, "4.2.2", "452 4.2.2 Mailbox full",
                                          action="delayed"))
    [ev] = await events.wait(lambda: events.of(job.message_id, K.MESSAGE_EVENT_KIND_DEFERRED))
    assert ev.status == c.MESSAGE_STATUS_DEFERRED and ev.error_description.startswith("4.2.2")
    assert events.contact(job.message_id) == []

    to = f"complainer-{uuid.uuid4().hex[:6]}@example.com"
    job2, raw2 = await sent(accept_stack, events, js, to)
    # feedback loops write to a fixed mailbox: the VERP comes from the quoted original
    await inbound(accept_stack, "fbl@bounces.example.com", arf(return_path(raw2), to))
    [ce] = await events.wait(lambda: events.contact(job2.message_id))
    assert ce.kind == e.CONTACT_EVENT_KIND_COMPLAINED and ce.address == to
    await suppressed(recipients, to)

    # forged VERP, plain mail, garbage: accepted, counted, nothing published
    local = verp.split("@")[0]
    forged = local[:-4] + ("abcd" if not local.endswith("abcd") else "dcba") + "@bounces.example.com"
    await inbound(accept_stack, forged, dsn(forged, "x@example.com", "5.1.1", "550 5.1.1 no"))
    await inbound(accept_stack, "postmaster@bounces.example.com", b"Subject: hi\r\n\r\nhello\r\n")
    await inbound(accept_stack, verp, b"Content-Type: multipart/report; boundary=\"x\"\r\n\r\n--x\r\n"
                                      b"Content-Type: message/delivery-status\r\n\r\n\x00\xff junk")
    async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{accept_stack['metrics_port']}/metrics") as r:
        text = await r.text()
    inbound_lines = [ln for ln in text.splitlines() if ln.startswith("herald_email_inbound_total")]
    assert re.search(r'herald_email_inbound_total\{kind="dsn",result="unmatched"\} [1-9]', text), inbound_lines
    assert re.search(r'herald_email_inbound_total\{kind="other",result="ignored"\} [1-9]', text)
    assert accept_stack["gateway"].alive()
    assert len(events.of(job.message_id, K.MESSAGE_EVENT_KIND_BOUNCED)) == 0


async def test_pixel_five_hits_one_unique_opener_and_machine_open_in_stats(
        accept_stack: dict[str, Any], events: Events, js: Any) -> None:
    campaign = str(uuid.uuid4())  # the stats API takes UUID campaign ids
    job, raw = await sent(accept_stack, events, js, "opener@example.com", campaign)
    _msg, html = html_of(raw)
    pixel = re.search(r'<img src="([^"]*/o/[^"]+\.gif)"', html).group(1)  # type: ignore[union-attr]
    ua = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    async with aiohttp.ClientSession() as http:
        for _ in range(5):
            async with http.get(pixel, headers={"User-Agent": ua}) as r:
                assert r.status == 200
        # Apple Mail Privacy Protection prefetch: Apple's network, bare UA
        async with http.get(pixel, headers={"User-Agent": "Mozilla/5.0",
                                            "X-Forwarded-For": "17.58.101.12"}) as r:
            assert r.status == 200
    opens = await events.wait(lambda: events.of(job.message_id, K.MESSAGE_EVENT_KIND_OPENED), n=6)
    assert sorted(ev.machine_open for ev in opens) == [False] * 5 + [True]
    assert {ev.ip for ev in opens} == {"127.0.0.1", "17.58.101.12"}
    async with grpc.aio.insecure_channel(f"127.0.0.1:{accept_stack['stats']}") as ch:
        stub = spb_grpc.StatsServiceStub(ch)
        while True:
            st = await stub.GetCampaignStats(spb.GetCampaignStatsRequest(campaign_id=campaign),
                                             metadata=WS)
            if st.views >= 6:
                break
            await asyncio.sleep(0.05)
    assert (st.views, st.viewed, st.machine_opens) == (6, 1, 1)


async def test_foreign_redirect_and_rate_limit(accept_stack: dict[str, Any], events: Events,
                                               js: Any) -> None:
    job, raw = await sent(accept_stack, events, js, "clicker@example.com")
    _msg, html = html_of(raw)
    click = re.search(r'href="([^"]*/c/[^"]+)"', html).group(1)  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as http:
        async with http.get(click + "?url=https://evil.example.net/&u=https://evil.example.net/",
                            allow_redirects=False) as r:
            assert r.status in (302, 307) and r.headers["Location"] == "https://example.com/offer?a=1&b=2"
        async with http.get(click.replace("/c/", "/c/x"), allow_redirects=False) as r:
            assert r.status == 404
        async with http.post(f"{accept_stack['url']}/u/x.y.z", data=b"x" * 100_000) as r:
            assert r.status in (404, 413)
        # one client past its burst gets 429s (burst 200 at this gateway)
        statuses = []
        for _ in range(260):
            async with http.get(f"{accept_stack['url']}/o/nope.gif",
                                headers={"X-Forwarded-For": "198.51.100.7"}) as r:
                statuses.append(r.status)
    assert 429 in statuses and statuses[0] == 404
