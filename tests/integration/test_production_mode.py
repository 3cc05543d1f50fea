"""Production mode (HERALD_PRODUCTION=1) on the real entry points: a process missing a setting
it would otherwise fall back on exits at once, status 2, with one log line naming it; a fully
configured one starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cli import procs
from tests.integration.test_tls import write_pki

ROOT = Path(__file__).resolve().parents[2]

# (process, module and arguments, extra environment, settings the message must name,
#  settings it must not name)
CASES = [
    ("campaigns", ["services.campaigns"], {},
     ["HERALD_DB_URL", "HERALD_TOKENS_FILE", "HERALD_TLS_CERT_FILE", "HERALD_TLS_KEY_FILE",
      "HERALD_TLS_CA_FILE", "HERALD_SERVICE_TOKEN", "HERALD_NATS_URL", "HERALD_RECIPIENTS_ADDR",
      "HERALD_STATS_ADDR"], ["HERALD_REDIS_URL"]),
    ("campaigns-migrate", ["services.campaigns", "migrate"], {},
     ["HERALD_DB_URL"], ["HERALD_TLS_CERT_FILE", "HERALD_TOKENS_FILE"]),
    ("recipients", ["services.recipients"], {"HERALD_DB_URL": "sqlite+aiosqlite:///x.db"},
     ["HERALD_TOKENS_FILE", "HERALD_TLS_CERT_FILE", "HERALD_TLS_KEY_FILE"],
     ["HERALD_DB_URL", "HERALD_SERVICE_TOKEN", "HERALD_TLS_CA_FILE"]),
    ("stats", ["services.stats"], {"HERALD_TOKENS_FILE": "/nonexistent/tokens.json"},
     ["HERALD_SERVICE_TOKEN", "HERALD_TLS_CA_FILE", "HERALD_REDIS_URL", "HERALD_CAMPAIGNS_ADDR",
      "HERALD_TOKENS_FILE=/nonexistent/tokens.json cannot be read"], ["HERALD_DB_URL"]),
    ("smpp-gateway", ["gateways.smpp"], {},
     ["HERALD_TLS_CERT_FILE", "HERALD_REDIS_URL", "HERALD_SMPP_ROUTES or HERALD_SMPP_HOST"],
     ["HERALD_TOKENS_FILE", "HERALD_SERVICE_TOKEN"]),
    ("email-gateway", ["gateways.email"],
     {"HERALD_DEV_MODE": "1", "HERALD_NATS_URL": "nats://nats.example.com:4222",
      "HERALD_REDIS_URL": "redis://redis.example.com:6379/0", "HERALD_SMTP_HOST": "relay.example.com",
      "HERALD_TRACKING_BASE_URL": "https://t.example.com", "HERALD_TLS_CERT_FILE": "/nonexistent/c.pem",
      "HERALD_TLS_KEY_FILE": "/nonexistent/k.pem"},
     ["HERALD_TRACKING_KEYS", "HERALD_DEV_MODE=1", "HERALD_TLS_CERT_FILE=/nonexistent/c.pem"],
     ["HERALD_SMTP_HOST", "HERALD_TRACKING_BASE_URL", "HERALD_NATS_URL", "HERALD_REDIS_URL"]),
]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any HERALD_* setting the test run may carry, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    return {**env, "HERALD_PRODUCTION": "1", **extra}


def test_each_process_names_what_it_lacks_and_exits(tmp_path: Path) -> None:
    started = time.monotonic()
    running = {name: subprocess.Popen(
        [sys.executable, "-m", *argv], cwd=tmp_path, env={**clean_env(**extra), "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for name, argv, extra, _, _ in CASES}
    for name, _, _, named, unnamed in CASES:
        out, _ = running[name].communicate(timeout=60)
        assert running[name].returncode == 2, (name, out)
        lines = [ln for ln in out.splitlines() if ln.strip()]
        assert len(lines) == 1, (name, out)
        record = json.loads(lines[0])
        assert record["level"] == "ERROR" and record["msg"].startswith(
            "production mode (HERALD_PRODUCTION=1): refusing to start: "), (name, record)
        missing = [s for s in named if s not in record["msg"]]
        assert not missing, (name, missing, record["msg"])
        # The settings to fix, also as a field of their own.
        fields = set(record["settings"].split(","))
        assert {s.split("=")[0] for s in named if " " not in s} <= fields, (name, record)
        assert not fields & set(unnamed), (name, record)
    # Refused before importing its way into connecting anywhere: no retry loop, no hang.
    assert time.monotonic() - started < 30
    assert not list(tmp_path.iterdir()), "a refused process left files behind"


async def test_fully_configured_service_starts_in_production_mode(
        tmp_path: Path, nats_url: str) -> None:
    pki = write_pki(tmp_path / "pki")
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"ops-token": {"workspace": "ws-prod", "roles": ["operator"]}}))
    env = clean_env(**pki.server_env(client_auth=False), **{
        "HERALD_DB_URL": f"sqlite+aiosqlite:///{tmp_path / 'recipients.db'}",
        "HERALD_TOKENS_FILE": str(tokens), "HERALD_NATS_URL": nats_url,
        "HERALD_GRPC_ADDR": "127.0.0.1:0", "HERALD_METRICS_ADDR": "127.0.0.1:0"})
    proc = procs.start_module("recipients", "services.recipients", tmp_path, env)
    try:
        async with grpc.aio.secure_channel(f"127.0.0.1:{proc.info['grpc_port']}",
                                           grpc.ssl_channel_credentials(pki.ca.read_bytes())) as ch:
            resp = await health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service="herald.v1.RecipientService"), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        proc.stop()
    assert proc.popen.returncode == 0, proc.log_tail()


def test_without_production_mode_nothing_is_required(tmp_path: Path) -> None:
    """The local stack and the tests rely on the development fallbacks."""
    env = {k: v for k, v in clean_env().items() if k != "HERALD_PRODUCTION"}
    env["PYTHONPATH"] = str(ROOT)
    code = ("from shared import production; from services.recipients.__main__ import REQUIREMENTS;"
            "production.enforce('recipients', REQUIREMENTS); print('passed')")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "passed", out.stderr
