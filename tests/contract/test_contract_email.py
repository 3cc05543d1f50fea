"""The email gateway's contract, through the real gateway process, the real SMTP sink and
the session's real NATS and Redis:
- the job's template variables (the contact's own fields, as campaigns builds them with
  shared.templating.recipient_variables) render in subject, text and HTML at the sink; a
  template that fails fails only its message (CONTENT_REJECTED), nothing is sent;
- outcome events name the relay (route); an acceptance after a deferral repeats no 451;
- signing keys: no start outside development mode without a secret key (or with the key
  once published in the sources); a development gateway signs with a random key kept in a
  file, so a token signed with the published key is refused and its own links survive a
  restart;
- a hard bounce is worded as a bounce, never as an unsubscribe.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from nats.js.api import DeliverPolicy

from cli import procs
from gateways.email import tokens
from shared import bus, eventbatch, templating
from tests.integration.test_email_acceptance import dsn, inbound, return_path
from tests.integration.test_email_gateway import Events, eml, html_of, publish

K = e.MessageEventKind
F = c.FailureCategory

pytestmark = pytest.mark.timeout(120)

# The key that was once the built-in default: it is in this repository's history.
PUBLISHED_KEY = b"herald-dev-tracking-key-not-secret"
ENV_WITHOUT_KEYS = ("HERALD_TRACKING_KEYS", "HERALD_DEV_MODE", "HERALD_TRACKING_DEV_KEY_FILE")


def gateway_env(nats_url: str, redis_url: str, smtp_port: int, key_file: Path) -> dict[str, str]:
    """A development-mode gateway with no HERALD_TRACKING_KEYS (what `make run` starts)."""
    return {
        "HERALD_NATS_URL": nats_url, "HERALD_REDIS_URL": redis_url,
        "HERALD_SMTP_HOST": "127.0.0.1", "HERALD_SMTP_PORT": str(smtp_port),
        "HERALD_SMTP_POOL_SIZE": "2", "HERALD_SMTP_MAX_ATTEMPTS": "3",
        "HERALD_SMTP_RETRY_BASE": "0.2", "HERALD_VERP_DOMAIN": "bounces.example.com",
        "HERALD_DEV_MODE": "1", "HERALD_TRACKING_KEYS": "",
        "HERALD_TRACKING_DEV_KEY_FILE": str(key_file),
    }


@pytest.fixture(scope="module")
def email_dev_stack(tmp_path_factory: pytest.TempPathFactory, nats_url: str,
                    redis_url: str) -> Iterator[dict[str, Any]]:
    work: Path = tmp_path_factory.mktemp("contract-email")
    sink = procs.start_module("contract-email-sink", "gateways.email.sink", work,
                              {"HERALD_SINK_DIR": str(work / "sink")})
    gateway = None
    try:
        env = gateway_env(nats_url, redis_url, sink.info["smtp_port"], work / "var" / "tracking.key")
        gateway = procs.start_module("contract-email-gateway", "gateways.email", work, env)
        yield {"work": work, "env": env, "sink_dir": work / "sink", "gateway": gateway,
               "url": gateway.info["tracking_url"], "bounce_port": gateway.info["bounce_port"],
               "route": f"127.0.0.1:{sink.info['smtp_port']}"}
    finally:
        if gateway is not None:
            gateway.stop()
        sink.stop()


@pytest.fixture(scope="module")
async def email_events(nats_url: str) -> AsyncIterator[Events]:
    nc = await bus.connect(nats_url)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    got = Events()

    async def on_msg(msg: Any) -> None:
        if msg.subject.startswith("events.message."):
            got.items += [(msg.subject, ev) for ev in eventbatch.events_of(msg)]
            return
        cls = e.ContactEvent if msg.subject.startswith("events.contact.") else e.MessageEvent
        ev = cls()
        ev.ParseFromString(msg.data)
        got.items.append((msg.subject, ev))

    sub = await js.subscribe("events.>", cb=on_msg, ordered_consumer=True,
                             deliver_policy=DeliverPolicy.NEW)
    yield got
    await sub.unsubscribe()
    await nc.close()


def contact_job(to: str, **kw: Any) -> e.MessageJob:
    """A job as campaigns builds it: every template variable of the contact in `fields`."""
    mid = str(uuid.uuid4())
    fields = templating.recipient_variables(
        first_name="Ada", last_name="Lovelace", phone="+447700900123", email=to,
        external_id="ext-ada", language="en", contact_id=f"ct-{mid}", fields={"city": "Leeds"})
    job = e.MessageJob(
        message_id=mid, campaign_id=str(uuid.uuid4()), workspace_id="ws-contract",
        channel=c.CHANNEL_EMAIL, attempt=1, sender="Herald News <news@example.com>", to=to,
        contact_id=f"ct-{mid}", variant="A", fields=fields,
        subject="Hello {{ first_name }}",
        text="Dear {{ full_name }} ({{ external_id }}, {{ city }}), see https://example.com/offer",
        html='<html><body><p>Hi {{ first_name }} {{ last_name }}</p>'
             '<a href="https://example.com/offer">Offer</a>'
             '<a href="{{ unsubscribe_url }}">Unsubscribe</a></body></html>')
    for k, v in kw.items():
        setattr(job, k, v)
    return job


async def sent(stack: dict[str, Any], events: Events, js: Any, job: e.MessageJob
               ) -> tuple[e.MessageEvent, bytes]:
    await publish(js, job)
    [ev] = await events.wait(lambda: events.of(job.message_id, K.MESSAGE_EVENT_KIND_SUBMITTED))
    [raw] = await eml(stack["sink_dir"], job.message_id)
    return ev, raw


# --- personalisation ----------------------------------------------------------------

async def test_contact_fields_render_in_subject_text_and_html_at_the_sink(
        email_dev_stack: dict[str, Any], email_events: Events, js: Any) -> None:
    job = contact_job("ada.contract@example.com")
    ev, raw = await sent(email_dev_stack, email_events, js, job)
    msg, html = html_of(raw)
    assert msg["Subject"] == "Hello Ada"
    assert msg.get_body(("plain",)).get_content().startswith(  # type: ignore[union-attr]
        "Dear Ada Lovelace (ext-ada, Leeds), see https://example.com/offer")
    assert "<p>Hi Ada Lovelace</p>" in html
    assert b"{{" not in raw and b"first_name" not in raw


async def test_a_failing_template_fails_its_message_only_and_sends_nothing(
        email_dev_stack: dict[str, Any], email_events: Events, js: Any) -> None:
    bad = {
        # a filter on a bad value raises inside Jinja (TypeError), at render time
        "render": contact_job("bad-render@example.com", text="{{ first_name | int + 'x' }}"),
        # does not compile
        "syntax": contact_job("bad-syntax@example.com", subject="Hello {{ first_name "),
        # the sandbox
        "sandbox": contact_job("bad-sandbox@example.com",
                               html="{{ ''.__class__.__mro__[1].__subclasses__() }}"),
    }
    good = contact_job("good-neighbour@example.com")
    for job in [*bad.values(), good]:
        await publish(js, job)
    await email_events.wait(lambda: email_events.of(good.message_id, K.MESSAGE_EVENT_KIND_SUBMITTED))
    for name, job in bad.items():
        [ev] = await email_events.wait(
            lambda j=job: email_events.of(j.message_id, K.MESSAGE_EVENT_KIND_FAILED))
        assert ev.failure_category == F.FAILURE_CATEGORY_CONTENT_REJECTED, name
        assert ev.error_description.startswith("template "), (name, ev.error_description)
        assert ev.status == c.MESSAGE_STATUS_FAILED, name
    for job in bad.values():
        assert [ev.kind for ev in email_events.of(job.message_id)] == [K.MESSAGE_EVENT_KIND_FAILED]
    mails = await asyncio.to_thread(
        lambda: [p.read_bytes() for p in email_dev_stack["sink_dir"].glob("*.eml")])
    assert not [m for m in mails if any(f"<{j.message_id}@" in m.decode() for j in bad.values())]


# --- outcome events -----------------------------------------------------------------

async def test_outcome_events_name_the_relay_and_acceptance_repeats_no_deferral(
        email_dev_stack: dict[str, Any], email_events: Events, js: Any) -> None:
    route = email_dev_stack["route"]
    ok, _ = await sent(email_dev_stack, email_events, js, contact_job("routed@example.com"))
    assert ok.route == route
    rejected = contact_job("reject-routed@example.com")
    await publish(js, rejected)
    [failed] = await email_events.wait(
        lambda: email_events.of(rejected.message_id, K.MESSAGE_EVENT_KIND_FAILED))
    assert failed.route == route and failed.error_code == "550"
    deferred_job = contact_job("defer-routed@example.com")  # the sink says 451 once
    await publish(js, deferred_job)
    [submitted] = await email_events.wait(
        lambda: email_events.of(deferred_job.message_id, K.MESSAGE_EVENT_KIND_SUBMITTED))
    [deferred] = email_events.of(deferred_job.message_id, K.MESSAGE_EVENT_KIND_DEFERRED)
    assert deferred.error_code == "451" and deferred.route == route
    assert (submitted.error_code, submitted.error_description, submitted.failure_category,
            submitted.route) == ("", "", F.FAILURE_CATEGORY_UNSPECIFIED, route)


# --- signing keys -------------------------------------------------------------------

def _start_and_wait_for_exit(work: Path, name: str, env: dict[str, str]) -> tuple[int, str]:
    """Run the gateway with exactly `env` over a clean HERALD_* key environment; returns
    (exit code, log) once it exits. Fails the test at once if it becomes ready instead."""
    ready = work / f"{name}.ready"
    log_path = work / f"{name}.log"
    base = {k: v for k, v in os.environ.items() if k not in ENV_WITHOUT_KEYS}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gateways.email"], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**base, **env, "HERALD_READY_FILE": str(ready)},
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 60  # a bound for a hung process, not an assertion
        while proc.poll() is None and time.monotonic() < deadline:
            if ready.exists() and ready.read_text().strip():
                pytest.fail(f"{name} started and served without a secret signing key")
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
    return proc.returncode, log_path.read_text(errors="replace")


@pytest.mark.parametrize("keys", ["", PUBLISHED_KEY.decode(), f"a-new-secret-key,{PUBLISHED_KEY.decode()}"],
                         ids=["missing", "published", "published-among-others"])
def test_no_start_without_a_secret_key_outside_development_mode(
        tmp_path: Path, nats_url: str, redis_url: str, keys: str) -> None:
    env = {"HERALD_NATS_URL": nats_url, "HERALD_REDIS_URL": redis_url,
           "HERALD_SMTP_HOST": "127.0.0.1", "HERALD_SMTP_PORT": str(procs.free_port()),
           "HERALD_TRACKING_DEV_KEY_FILE": str(tmp_path / "tracking.key")}
    if keys:
        env["HERALD_TRACKING_KEYS"] = keys
    code, log = _start_and_wait_for_exit(tmp_path, "gateway-no-key", env)
    assert code != 0, log
    lines = [ln for ln in log.splitlines() if ln.strip()]
    assert len(lines) == 1, log  # one clear line, no traceback
    assert "HERALD_TRACKING_KEYS" in lines[0] and "refusing to start" in lines[0]
    assert not (tmp_path / "tracking.key").exists()  # no development key outside dev mode


async def test_development_gateway_refuses_tokens_signed_with_the_published_key(
        email_dev_stack: dict[str, Any], email_events: Events, js: Any) -> None:
    base = email_dev_stack["url"]
    mid = str(uuid.uuid4())
    forged = tokens.Signer([PUBLISHED_KEY])
    click = forged.sign(tokens.Token(kind=tokens.CLICK, message_id=mid, link_index=0,
                                     url="https://evil.example.net/"))
    pixel = forged.sign(tokens.Token(kind=tokens.OPEN, message_id=mid))
    unsub = forged.sign(tokens.Token(kind=tokens.UNSUBSCRIBE, message_id=mid,
                                     address="victim@example.com"))
    async with aiohttp.ClientSession() as http:
        for url in (f"{base}/c/{click}", f"{base}/o/{pixel}.gif", f"{base}/u/{unsub}"):
            async with http.get(url, allow_redirects=False) as r:
                assert r.status in (400, 404), url
                assert "Location" not in r.headers
        async with http.post(f"{base}/u/{unsub}", data={"List-Unsubscribe": "One-Click"}) as r:
            assert r.status in (400, 404)
    # the gateway's own links work: the key it made is what it signs with
    job = contact_job("clicker.contract@example.com")
    _ev, raw = await sent(email_dev_stack, email_events, js, job)
    _msg, html = html_of(raw)
    own = re.search(r'href="([^"]*/c/[^"]+)"', html).group(1)  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as http, http.get(own, allow_redirects=False) as r:
        assert r.status == 302 and r.headers["Location"] == "https://example.com/offer"
    assert email_events.of(mid) == [] and email_events.contact(mid) == []
    key_file = Path(email_dev_stack["env"]["HERALD_TRACKING_DEV_KEY_FILE"])
    kept = (await asyncio.to_thread(key_file.read_bytes)).strip()
    assert re.fullmatch(rb"[0-9a-f]{64}", kept)  # random, made by this gateway
    email_dev_stack["own_click"] = own


async def test_development_key_survives_a_restart(email_dev_stack: dict[str, Any],
                                                  email_events: Events, js: Any) -> None:
    """A second gateway on the same key file (as after a restart of the local stack)
    honours the links the first one mailed."""
    if "own_click" not in email_dev_stack:
        job = contact_job("restart.contract@example.com")
        _ev, raw = await sent(email_dev_stack, email_events, js, job)
        email_dev_stack["own_click"] = re.search(  # type: ignore[union-attr]
            r'href="([^"]*/c/[^"]+)"', html_of(raw)[1]).group(1)
    token = email_dev_stack["own_click"].rsplit("/c/", 1)[1]
    again = procs.start_module("contract-email-gateway-2", "gateways.email",
                               email_dev_stack["work"], email_dev_stack["env"])
    try:
        async with aiohttp.ClientSession() as http, http.get(
                f"{again.info['tracking_url']}/c/{token}", allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "https://example.com/offer"
    finally:
        again.stop()


# --- bounces ------------------------------------------------------------------------

async def test_hard_bounce_is_worded_as_a_bounce(email_dev_stack: dict[str, Any],
                                                 email_events: Events, js: Any) -> None:
    to = f"gone-{uuid.uuid4().hex[:6]}@example.com"
    job = contact_job(to)
    _ev, raw = await sent(email_dev_stack, email_events, js, job)
    verp = return_path(raw)
    await inbound(email_dev_stack, verp, dsn(verp, to, "5.1.1",
                                             f"550 5.1.1 <{to}>: Recipient address rejected"))
    [ev] = await email_events.wait(
        lambda: email_events.of(job.message_id, K.MESSAGE_EVENT_KIND_BOUNCED))
    assert ev.status == c.MESSAGE_STATUS_FAILED and ev.error_code == "550"
    assert ev.error_description.startswith("bounced: 5.1.1 "), ev.error_description
    assert "unsubscribed" not in ev.error_description.lower()
    assert ev.failure_category == F.FAILURE_CATEGORY_INVALID_ADDRESS
    [ce] = await email_events.wait(lambda: email_events.contact(job.message_id))
    assert ce.kind == e.CONTACT_EVENT_KIND_BOUNCED and ce.reason.startswith("5.1.1")
    # a bounce is not an opt-out
    assert email_events.of(job.message_id, K.MESSAGE_EVENT_KIND_OPTED_OUT) == []
