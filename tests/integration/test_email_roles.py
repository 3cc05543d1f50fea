"""Each role of the email gateway runs as a process of its own: the sender (jobs -> relay,
links to the configured tracking URL, no tracking or bounce server), the tracking server
(public HTTP, no Redis), the bounce server (inbound SMTP); each with health, /metrics and
its ready line, each stopping cleanly on SIGTERM and refusing to start in production mode
without what its role needs."""

from __future__ import annotations

import json
import os
import smtplib
import subprocess
import sys
import urllib.request
from pathlib import Path

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cli import procs
from gateways.email import tokens
from shared import bus
from tests.integration.test_email_gateway import eml, html_of, make_job, publish

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
KEY = "roles-key"


def serving(proc: procs.Proc) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{proc.info['grpc_port']}") as ch:
        res = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{proc.info['metrics_port']}/metrics",
                                     timeout=5).read().decode()
    return res.status == health_pb2.HealthCheckResponse.SERVING and "herald_build_info" in metrics


def stopped_cleanly(proc: procs.Proc) -> None:
    proc.stop()
    assert proc.popen.returncode == 0, proc.log_tail()


async def test_each_role_starts_alone(tmp_path: Path, nats_url: str, redis_url: str) -> None:
    sink_dir = tmp_path / "sink"
    sink = procs.start_module("roles-sink", "gateways.email.sink", tmp_path,
                              {"HERALD_SINK_DIR": str(sink_dir)})
    started: list[procs.Proc] = []
    try:
        base = {"HERALD_NATS_URL": nats_url, "HERALD_TRACKING_KEYS": KEY}
        sender = procs.start_module("roles-sender", "gateways.email.sender", tmp_path, {
            **base, "HERALD_REDIS_URL": redis_url, "HERALD_SMTP_HOST": "127.0.0.1",
            "HERALD_SMTP_PORT": str(sink.info["smtp_port"]),
            "HERALD_TRACKING_BASE_URL": "https://t.example.com"})
        started.append(sender)
        # Neither the tracking nor the bounce server needs the relay; tracking needs no Redis
        # (an unreachable one proves it).
        tracking = procs.start_module("roles-tracking", "gateways.email.tracking_server", tmp_path,
                                      {**base, "HERALD_REDIS_URL": "redis://127.0.0.1:1/0",
                                       "HERALD_SMTP_HOST": "relay.invalid"})
        started.append(tracking)
        bounces = procs.start_module("roles-bounces", "gateways.email.bounce_server", tmp_path,
                                     {**base, "HERALD_REDIS_URL": redis_url,
                                      "HERALD_SMTP_HOST": "relay.invalid"})
        started.append(bounces)

        assert sender.info["service"] == "email-sender"
        assert sender.info["tracking_url"] == "https://t.example.com"
        assert "tracking_port" not in sender.info and "bounce_port" not in sender.info
        assert tracking.info["service"] == "email-tracking" and tracking.info["tracking_port"]
        assert "bounce_port" not in tracking.info
        assert bounces.info["service"] == "email-bounces" and bounces.info["bounce_port"]
        assert "tracking_port" not in bounces.info
        for proc in started:
            assert serving(proc), proc.name

        # The sender sends, its links pointing at the tracking URL it was given.
        nc = await bus.connect(nats_url)
        job = make_job("roles@example.com")
        await publish(nc.jetstream(), job)
        await nc.close()
        [raw] = await eml(sink_dir, job.message_id, timeout=20)
        _, html = html_of(raw)
        assert "https://t.example.com/c/" in html and "https://t.example.com/o/" in html

        # The tracking server answers a signed pixel on its own port.
        pixel = tokens.Signer([KEY.encode()]).sign(
            tokens.Token(kind=tokens.OPEN, message_id=job.message_id, campaign_id="c-roles"))
        url = f"http://127.0.0.1:{tracking.info['tracking_port']}/o/{pixel}.gif"
        async with aiohttp.ClientSession() as http, http.get(url) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "image/gif"

        # The bounce server speaks SMTP on its own port.
        with smtplib.SMTP("127.0.0.1", bounces.info["bounce_port"], timeout=5) as smtp:
            assert smtp.ehlo()[0] == 250

        for proc in started:
            stopped_cleanly(proc)
    finally:
        for proc in started:
            if proc.alive():
                proc.stop()
        sink.stop()


@pytest.mark.parametrize("module, named, unnamed", [
    ("gateways.email.sender", ["HERALD_SMTP_HOST", "HERALD_TRACKING_BASE_URL", "HERALD_REDIS_URL",
                               "HERALD_TRACKING_KEYS"], []),
    ("gateways.email.tracking_server", ["HERALD_TRACKING_KEYS", "HERALD_NATS_URL"],
     ["HERALD_SMTP_HOST", "HERALD_REDIS_URL", "HERALD_TRACKING_BASE_URL"]),
    ("gateways.email.bounce_server", ["HERALD_TRACKING_KEYS", "HERALD_REDIS_URL"],
     ["HERALD_SMTP_HOST", "HERALD_TRACKING_BASE_URL"]),
])
def test_production_mode_asks_each_role_for_its_own_settings(
        tmp_path: Path, module: str, named: list[str], unnamed: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    out = subprocess.run([sys.executable, "-m", module], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60,
                         env={**env, "HERALD_PRODUCTION": "1", "PYTHONPATH": str(ROOT)})
    assert out.returncode == 2, out.stdout + out.stderr
    [line] = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
    fields = set(json.loads(line)["settings"].split(","))
    assert set(named) <= fields, (module, fields)
    assert not fields & set(unnamed), (module, fields)


def test_the_sender_alone_needs_to_know_where_its_links_go(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    out = subprocess.run([sys.executable, "-m", "gateways.email.sender"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60,
                         env={**env, "HERALD_TRACKING_KEYS": KEY, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 2
    assert "HERALD_TRACKING_BASE_URL not set" in out.stdout + out.stderr
