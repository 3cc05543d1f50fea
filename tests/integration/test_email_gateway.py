"""The email gateway and the SMTP sink as real processes, on the session's real NATS and
Redis: jobs in on jobs.email, mail out over SMTP into the sink's .eml files, outcome and
tracking events on EVENTS, tracking over real HTTP."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from nats.js.api import DeliverPolicy

from cli import procs
from gateways.email import tokens
from shared import bus, eventbatch

K = e.MessageEventKind
S = c.MessageStatus
F = c.FailureCategory

pytestmark = pytest.mark.timeout(120)

HTML = ('<html><body><p>Hi {{ first_name }}</p>'
        '<a href="https://example.com/offer?a=1&amp;b=2">Offer</a> '
        '<a href="https://example.com/two">Two</a> '
        '<a href="{{ unsubscribe_url }}">Unsubscribe</a></body></html>')


@pytest.fixture(scope="module")
def stack(workdir: Path, nats_url: str, redis_url: str) -> Iterator[dict[str, Any]]:
    base = workdir / "email"
    sink_dir = base / "sink"
    sink = procs.start_module("email-sink", "gateways.email.sink", base,
                              {"HERALD_SINK_DIR": str(sink_dir)})
    gateway = None
    try:
        gateway = procs.start_module("email-gateway", "gateways.email", base, {
            "HERALD_NATS_URL": nats_url,
            "HERALD_REDIS_URL": redis_url,
            "HERALD_SMTP_HOST": "127.0.0.1",
            "HERALD_SMTP_PORT": str(sink.info["smtp_port"]),
            "HERALD_SMTP_POOL_SIZE": "2",
            "HERALD_SMTP_MAX_ATTEMPTS": "3",
            "HERALD_SMTP_RETRY_BASE": "0.2",
            "HERALD_TRACKING_KEYS": "it-key-new,it-key-old",
        })
        yield {"sink_dir": sink_dir, "url": gateway.info["tracking_url"], "gateway": gateway,
               "sink": sink}
    finally:
        if gateway is not None:
            gateway.stop()
        sink.stop()
    # SIGTERM drains and exits cleanly (make run and Kubernetes rely on it)
    assert gateway.popen.returncode == 0, gateway.log_tail()
    assert sink.popen.returncode == 0, sink.log_tail()


class Events:
    def __init__(self) -> None:
        self.items: list[tuple[str, Any]] = []

    def of(self, message_id: str, kind: int | None = None) -> list[e.MessageEvent]:
        return [ev for subj, ev in self.items if subj.startswith("events.message.")
                and ev.message_id == message_id and (kind is None or ev.kind == kind)]

    def contact(self, message_id: str) -> list[e.ContactEvent]:
        return [ev for subj, ev in self.items
                if subj.startswith("events.contact.") and ev.message_id == message_id]

    async def wait(self, pick: Callable[[], list[Any]], n: int = 1, timeout: float = 15) -> list[Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            found = pick()
            if len(found) >= n:
                return found
            await asyncio.sleep(0.02)
        raise AssertionError(f"expected {n} events, have {pick()}")


@pytest.fixture(scope="module")
async def events(nats_url: str) -> AsyncIterator[Events]:
    nc = await bus.connect(nats_url)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    got = Events()

    async def on_msg(msg: Any) -> None:
        if msg.subject.startswith("events.message."):
            got.items += [(msg.subject, ev) for ev in eventbatch.events_of(msg)]
        elif msg.subject.startswith("events.contact."):
            got.items.append((msg.subject, e.ContactEvent.FromString(msg.data)))

    # The stream, not the raw subject: what consumers see, after Nats-Msg-Id de-dup.
    sub = await js.subscribe("events.>", cb=on_msg, ordered_consumer=True,
                             deliver_policy=DeliverPolicy.NEW)
    yield got
    await sub.unsubscribe()
    await nc.close()


def make_job(to: str, **kw: Any) -> e.MessageJob:
    mid = f"m-{uuid.uuid4()}"
    return e.MessageJob(
        message_id=mid, campaign_id="c-email-it", workspace_id="ws-it", channel=c.CHANNEL_EMAIL,
        attempt=1, sender="Herald News <news@example.com>", to=to, contact_id=f"ct-{mid}",
        variant="A", fields={"first_name": "Ada"}, subject="Hello {{ first_name }}",
        text="Hi {{ first_name }}, see https://example.com/offer", html=HTML, **kw,
    )


async def publish(js: Any, job: e.MessageJob, msg_id: str | None = None) -> None:
    await bus.publish(js, bus.SUBJECT_EMAIL_JOBS, job, msg_id or f"{job.message_id}:{job.attempt}")


def _read_eml(directory: Path, message_id: str) -> list[bytes]:
    needle = f"Message-ID: <{message_id}@example.com>".encode()
    if not directory.exists():
        return []
    return [p.read_bytes() for p in sorted(directory.glob("*.eml")) if needle in p.read_bytes()]


async def eml(directory: Path, message_id: str, timeout: float = 10) -> list[bytes]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        found = await asyncio.to_thread(_read_eml, directory, message_id)
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"no .eml for {message_id}")


def html_of(raw: bytes) -> tuple[EmailMessage, str]:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg, msg.get_body(("html",)).get_content()  # type: ignore[union-attr]


@pytest.fixture(scope="module")
async def delivered(stack: dict[str, Any], events: Events, nats_url: str) -> dict[str, Any]:
    """One message sent through the whole path, shared by the tracking tests."""
    nc = await bus.connect(nats_url)
    job = make_job("ada@example.com")
    await publish(nc.jetstream(), job)
    await nc.close()
    [ev] = await events.wait(lambda: events.of(job.message_id, K.MESSAGE_EVENT_KIND_SUBMITTED))
    [raw] = await eml(stack["sink_dir"], job.message_id)
    msg, html = html_of(raw)
    clicks = re.findall(r'href="([^"]*/c/[^"]+)"', html)
    pixel = re.search(r'<img src="([^"]*/o/[^"]+\.gif)"', html)
    unsub = re.search(r"<(https?://[^>]+/u/[^>]+)>", str(msg["List-Unsubscribe"]))
    assert pixel and unsub and len(clicks) == 2
    return {"job": job, "event": ev, "msg": msg, "html": html, "clicks": clicks,
            "pixel": pixel.group(1), "unsubscribe": unsub.group(1)}


async def sentinel(events: Events, base_url: str, message_id: str) -> None:
    """A known event published after the requests under test: once it is on the stream,
    anything those requests published would be too (one connection, one order)."""
    ua = f"sentinel-{uuid.uuid4()}"
    pixel = tokens.Signer([b"it-key-new"]).sign(tokens.Token(kind=tokens.OPEN, message_id=message_id))
    async with aiohttp.ClientSession() as http, http.get(
            f"{base_url}/o/{pixel}.gif", headers={"User-Agent": ua}) as r:
        assert r.status == 200
    await events.wait(lambda: [ev for ev in events.of(message_id, K.MESSAGE_EVENT_KIND_OPENED)
                               if ev.user_agent == ua])


# --- sending ------------------------------------------------------------------------

async def test_submitted_with_rendered_body_tracking_and_unsubscribe_headers(
        delivered: dict[str, Any], stack: dict[str, Any]) -> None:
    job, ev, msg, html = delivered["job"], delivered["event"], delivered["msg"], delivered["html"]
    assert ev.status == S.MESSAGE_STATUS_SUBMITTED and ev.channel == c.CHANNEL_EMAIL
    assert ev.provider_message_id == f"<{job.message_id}@example.com>"
    assert (ev.campaign_id, ev.workspace_id, ev.to, ev.attempt, ev.variant) == (
        "c-email-it", "ws-it", "ada@example.com", 1, "A")
    assert ev.route == f"127.0.0.1:{stack['sink'].info['smtp_port']}"  # the relay that took it
    assert msg["Subject"] == "Hello Ada" and msg["To"] == "ada@example.com"
    assert msg["Delivered-To"] == "ada@example.com"
    # VERP: the bounce address names this message, signed
    rp = re.fullmatch(r"<(b-[a-z0-9]+-1-[a-z0-9]+)@example\.com>", str(msg["Return-Path"]))
    assert rp and tokens.parse_verp(tokens.Signer([b"it-key-new"]), rp.group(1) + "@example.com") == (
        job.message_id, 1)
    assert "Hi Ada" in html
    assert "Hi Ada, see https://example.com/offer" in msg.get_body(("plain",)).get_content()
    base = stack["url"]
    # Both content links point at the tracker now; the originals only live in the tokens.
    assert all(u.startswith(f"{base}/c/") for u in delivered["clicks"])
    assert 'href="https://example.com/offer' not in html and 'href="https://example.com/two' not in html
    assert delivered["pixel"].startswith(f"{base}/o/")
    # The in-body unsubscribe link is the List-Unsubscribe URL, not a click redirect.
    assert f'href="{delivered["unsubscribe"]}"' in html
    lu = str(msg["List-Unsubscribe"])
    assert re.search(r"<mailto:unsubscribe@example\.com\?subject=unsubscribe%20[\w.-]+>", lu)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_550_is_failed_with_enhanced_code(js: Any, events: Events, stack: dict[str, Any]) -> None:
    job = make_job("reject-bob@example.com")
    await publish(js, job)
    [ev] = await events.wait(lambda: events.of(job.message_id, K.MESSAGE_EVENT_KIND_FAILED))
    assert ev.status == S.MESSAGE_STATUS_FAILED
    assert ev.error_code == "550"
    assert ev.error_description.startswith("5.1.1 ")
    assert ev.failure_category == F.FAILURE_CATEGORY_INVALID_ADDRESS
    assert "unsubscribed" not in ev.error_description
    assert ev.route == f"127.0.0.1:{stack['sink'].info['smtp_port']}"
    assert await asyncio.to_thread(_read_eml, stack["sink_dir"], job.message_id) == []


async def test_451_once_is_deferred_then_submitted(js: Any, events: Events, stack: dict[str, Any]) -> None:
    job = make_job("defer-cy@example.com")
    await publish(js, job)
    await events.wait(lambda: events.of(job.message_id, K.MESSAGE_EVENT_KIND_SUBMITTED))
    kinds = [ev.kind for ev in events.of(job.message_id)]
    assert kinds == [K.MESSAGE_EVENT_KIND_DEFERRED, K.MESSAGE_EVENT_KIND_SUBMITTED]
    deferred = events.of(job.message_id, K.MESSAGE_EVENT_KIND_DEFERRED)[0]
    assert deferred.status == S.MESSAGE_STATUS_DEFERRED
    assert deferred.error_code == "451" and deferred.error_description.startswith("4.7.1 ")
    # the acceptance does not repeat the deferral's text: the ledger shows no stale 451
    [submitted] = events.of(job.message_id, K.MESSAGE_EVENT_KIND_SUBMITTED)
    assert (submitted.error_code, submitted.error_description, submitted.failure_category) == (
        "", "", F.FAILURE_CATEGORY_UNSPECIFIED)
    assert submitted.route == deferred.route == f"127.0.0.1:{stack['sink'].info['smtp_port']}"
    assert len(await eml(stack["sink_dir"], job.message_id)) == 1


async def test_deferrals_stop_after_max_attempts(js: Any, events: Events) -> None:
    job = make_job("defer-9-dee@example.com")  # the sink defers it 9 times; we try 3
    await publish(js, job)
    [failed] = await events.wait(lambda: events.of(job.message_id, K.MESSAGE_EVENT_KIND_FAILED))
    kinds = [ev.kind for ev in events.of(job.message_id)]
    assert kinds == [K.MESSAGE_EVENT_KIND_DEFERRED] * 2 + [K.MESSAGE_EVENT_KIND_FAILED]
    assert failed.error_code == "451" and failed.error_description.startswith("4.7.1 ")
    assert "gave up after 3 attempts" in failed.error_description
    assert failed.failure_category == F.FAILURE_CATEGORY_THROTTLED


async def test_redelivered_job_is_sent_once(js: Any, events: Events, stack: dict[str, Any]) -> None:
    job = make_job("eve@example.com")
    await publish(js, job)
    # The same job again under another Nats-Msg-Id, as after a lost ack.
    await publish(js, job, f"{job.message_id}:1:again")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while loop.time() < deadline:
        info = await js.consumer_info(bus.JOBS_STREAM, "email")
        if info.num_pending == 0 and info.num_ack_pending == 0:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("jobs not consumed")
    await events.wait(lambda: events.of(job.message_id, K.MESSAGE_EVENT_KIND_SUBMITTED))
    assert len(await eml(stack["sink_dir"], job.message_id)) == 1
    await sentinel(events, stack["url"], job.message_id)
    assert [ev.kind for ev in events.of(job.message_id)] == [
        K.MESSAGE_EVENT_KIND_SUBMITTED, K.MESSAGE_EVENT_KIND_OPENED]
    port = stack["gateway"].info["metrics_port"]
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
        # the second copy was handled: as a duplicate, re-publishing the recorded outcome
        assert re.search(r'herald_email_sends_total\{result="duplicate"\} [1-9]', await r.text())


async def test_unsendable_jobs_fail_without_smtp(js: Any, events: Events, stack: dict[str, Any]) -> None:
    past = Timestamp(seconds=1_000_000_000)  # 2001
    cases = {
        "bad template": (make_job("fay@example.com"), F.FAILURE_CATEGORY_CONTENT_REJECTED),
        "failing filter": (make_job("fay2@example.com"), F.FAILURE_CATEGORY_CONTENT_REJECTED),
        "broken subject": (make_job("fay3@example.com"), F.FAILURE_CATEGORY_CONTENT_REJECTED),
        "bad address": (make_job("not-an-address"), F.FAILURE_CATEGORY_INVALID_ADDRESS),
        "bad sender": (make_job("gus@example.com"), F.FAILURE_CATEGORY_CONFIG_ERROR),
        "expired": (make_job("hal@example.com", expires_at=past), F.FAILURE_CATEGORY_EXPIRED),
    }
    cases["bad template"][0].html = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    # a filter on a bad value raises inside Jinja (TypeError): the message fails alone
    cases["failing filter"][0].text = "{{ first_name | int + 'x' }}"
    cases["broken subject"][0].subject = "Hello {{ first_name "
    cases["bad sender"][0].sender = "nobody"
    for job, _ in cases.values():
        await publish(js, job)
    for name, (job, category) in cases.items():
        [ev] = await events.wait(lambda j=job: events.of(j.message_id, K.MESSAGE_EVENT_KIND_FAILED))
        assert ev.failure_category == category, name
        assert ev.error_description, name
        assert ev.route == "", name  # never reached the relay
        assert await asyncio.to_thread(_read_eml, stack["sink_dir"], job.message_id) == [], name


async def test_marker_left_by_a_dead_worker_fails_instead_of_resending(
        js: Any, redis_client: Any, events: Events, stack: dict[str, Any]) -> None:
    written, legacy = make_job("ivy@example.com"), make_job("ivy2@example.com")
    # a worker (no liveness key: stopped) wrote the message and never recorded the answer;
    # an older gateway's "sending" marker an hour old says the same: the relay may have it
    await redis_client.set(f"herald:email:send:{written.message_id}:1", json.dumps(
        {"s": "written", "t": time.time() - 1, "o": "dead-worker", "b": "1"}))
    await redis_client.set(f"herald:email:send:{legacy.message_id}:1",
                           json.dumps({"s": "sending", "t": time.time() - 3600}))
    for job in (written, legacy):
        await publish(js, job)
    for job in (written, legacy):
        [ev] = await events.wait(lambda j=job: events.of(j.message_id, K.MESSAGE_EVENT_KIND_FAILED))
        assert ev.failure_category == F.FAILURE_CATEGORY_UNKNOWN
        assert ev.error_description.startswith(
            "ABANDONED: the relay may have accepted it; not resent to avoid a duplicate")
        assert await asyncio.to_thread(_read_eml, stack["sink_dir"], job.message_id) == []
    # an operator retry is a new attempt and goes out
    written.attempt = 2
    await publish(js, written)
    await events.wait(lambda: events.of(written.message_id, K.MESSAGE_EVENT_KIND_SUBMITTED))
    assert len(await eml(stack["sink_dir"], written.message_id)) == 1
    port = stack["gateway"].info["metrics_port"]
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
        assert re.search(r'herald_email_abandoned_total\{reason="worker_stopped"\} [2-9]', await r.text())


async def test_claim_held_by_a_stopped_worker_is_taken_over_and_sent(
        js: Any, redis_client: Any, events: Events, stack: dict[str, Any]) -> None:
    job = make_job("jay@example.com")
    # fetched by a worker that stopped before writing anything: the relay never saw it
    await redis_client.set(f"herald:email:send:{job.message_id}:1", json.dumps(
        {"s": "held", "t": time.time(), "o": "dead-worker", "b": "1"}))
    await publish(js, job)
    [ev] = await events.wait(lambda: events.of(job.message_id, K.MESSAGE_EVENT_KIND_SUBMITTED))
    assert (ev.error_code, ev.error_description) == ("", "")
    assert len(await eml(stack["sink_dir"], job.message_id)) == 1
    assert [e.kind for e in events.of(job.message_id)] == [K.MESSAGE_EVENT_KIND_SUBMITTED]


# --- tracking -----------------------------------------------------------------------

async def test_pixel_five_hits_five_opens(delivered: dict[str, Any], events: Events) -> None:
    mid = delivered["job"].message_id
    uas = ["Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"] * 4 + [
        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"]
    async with aiohttp.ClientSession() as http:
        for ua in uas:
            async with http.get(delivered["pixel"], headers={"User-Agent": ua}) as r:
                assert r.status == 200 and r.content_type == "image/gif"
                assert (await r.read()).startswith(b"GIF89a")
                assert "no-store" in r.headers["Cache-Control"]
    opens = await events.wait(lambda: events.of(mid, K.MESSAGE_EVENT_KIND_OPENED), n=5)
    opens = [ev for ev in opens if ev.user_agent in uas]
    assert len(opens) == 5 and len({ev.event_id for ev in opens}) == 5
    assert all(ev.status == S.MESSAGE_STATUS_UNSPECIFIED and ev.ip == "127.0.0.1" for ev in opens)
    assert [ev.machine_open for ev in opens] == [False] * 4 + [True]
    assert all((ev.campaign_id, ev.workspace_id, ev.variant) == ("c-email-it", "ws-it", "A") for ev in opens)


async def test_click_redirects_to_bound_url(delivered: dict[str, Any], events: Events) -> None:
    mid = delivered["job"].message_id
    first, second = delivered["clicks"]
    async with aiohttp.ClientSession() as http:
        async with http.head(first, allow_redirects=False) as r:  # link scanners: not a click
            assert r.status == 302
        # A target in the query string is ignored: the token alone decides.
        async with http.get(first.replace("&amp;", "&") + "?url=https://evil.example.net/",
                            allow_redirects=False) as r:
            assert r.status == 302
            assert r.headers["Location"] == "https://example.com/offer?a=1&b=2"
        async with http.get(second, allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "https://example.com/two"
    await sentinel(events, first.split("/c/")[0], mid)
    clicks = events.of(mid, K.MESSAGE_EVENT_KIND_CLICKED)
    assert [(ev.link_index, ev.url) for ev in clicks] == [
        (0, "https://example.com/offer?a=1&b=2"), (1, "https://example.com/two")]
    assert clicks[0].status == S.MESSAGE_STATUS_UNSPECIFIED and clicks[0].user_agent


async def test_token_signed_with_retiring_key_still_works(stack: dict[str, Any], events: Events) -> None:
    mid = f"m-{uuid.uuid4()}"
    old = tokens.Signer([b"it-key-old"]).sign(
        tokens.Token(kind=tokens.CLICK, message_id=mid, link_index=3, url="https://example.com/old"))
    async with aiohttp.ClientSession() as http, http.get(
            f"{stack['url']}/c/{old}", allow_redirects=False) as r:
        assert r.status == 302 and r.headers["Location"] == "https://example.com/old"
    [ev] = await events.wait(lambda: events.of(mid, K.MESSAGE_EVENT_KIND_CLICKED))
    assert ev.link_index == 3


async def test_tampered_or_foreign_tokens_are_404_and_record_nothing(
        delivered: dict[str, Any], events: Events, stack: dict[str, Any]) -> None:
    mid = delivered["job"].message_id
    click = delivered["clicks"][1]
    prefix, token = click.rsplit("/", 1)
    body, sig = token.rsplit(".", 1)
    tampered_body = body[:10] + ("A" if body[10] != "A" else "B") + body[11:]
    # the same link signature on another message's id
    other_mid = tokens.Signer.message_part(f"m-{uuid.uuid4()}")
    forged_mid = f"m-{uuid.uuid4()}"
    foreign = tokens.Signer([b"attacker-key"]).sign(
        tokens.Token(kind=tokens.CLICK, message_id=forged_mid, url="https://evil.example.net/"))
    base = stack["url"]
    before = len(events.of(mid))
    async with aiohttp.ClientSession() as http:
        for url in [f"{prefix}/{tampered_body}.{sig}", f"{prefix}/{body}.{sig[:-3]}abc",
                    f"{prefix}/{body.split('.')[0]}.{other_mid}.{sig}",
                    f"{base}/c/{foreign}", f"{base}/o/{foreign}.gif", f"{base}/c/nonsense",
                    # the right signature on the wrong kind of link
                    delivered["pixel"].replace("/o/", "/c/").removesuffix(".gif")]:
            async with http.get(url, allow_redirects=False) as r:
                assert r.status == 404, url
                assert "Location" not in r.headers
        async with http.post(f"{base}/u/{foreign}") as r:
            assert r.status == 404
    await sentinel(events, base, mid)
    assert len(events.of(mid)) == before + 1  # the sentinel's open only
    assert events.of(forged_mid) == [] and events.contact(forged_mid) == []


async def test_unsubscribe_get_changes_nothing_post_opts_out(
        delivered: dict[str, Any], events: Events) -> None:
    job, url = delivered["job"], delivered["unsubscribe"]
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as r:
            assert r.status == 200 and "<form method=\"post\">" in await r.text()
        await sentinel(events, url.split("/u/")[0], job.message_id)
        assert events.contact(job.message_id) == []
        # RFC 8058 one-click, as a mail client sends it
        async with http.post(url, data={"List-Unsubscribe": "One-Click"}) as r:
            assert r.status == 200 and "unsubscribed" in await r.text()
    [ev] = await events.wait(lambda: events.contact(job.message_id))
    assert ev.kind == e.CONTACT_EVENT_KIND_OPTED_OUT and ev.channel == c.CHANNEL_EMAIL
    assert (ev.address, ev.contact_id, ev.campaign_id, ev.workspace_id) == (
        "ada@example.com", job.contact_id, "c-email-it", "ws-it")
    assert ev.reason == "one-click unsubscribe" and ev.event_id
    assert events.of(job.message_id, K.MESSAGE_EVENT_KIND_OPTED_OUT) == []


async def test_health_metrics_and_healthz(stack: dict[str, Any], delivered: dict[str, Any]) -> None:
    info = stack["gateway"].info
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{stack['url']}/healthz") as r:
            assert r.status == 200
        async with http.get(f"http://127.0.0.1:{info['metrics_port']}/metrics") as r:
            text = await r.text()
    assert 'herald_email_sends_total{result="submitted"}' in text
    assert "herald_email_send_latency_seconds_bucket" in text
    assert 'herald_tracking_requests_total{kind="open",result="ok"}' in text
    async with grpc.aio.insecure_channel(f"127.0.0.1:{info['grpc_port']}") as ch:
        resp = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING
