"""Configuration from HERALD_* environment variables.

Every variable is declared once here with its default and meaning; docs/configuration.md
is checked against this registry by a unit test, so the reference cannot drift.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    doc: str
    scope: str  # which processes read it

    def get(self) -> str:
        return os.environ.get(self.name, self.default)

    def get_int(self) -> int:
        raw = self.get()
        try:
            return int(raw)
        except ValueError as exc:
            raise ValueError(f"{self.name}={raw!r} is not an integer") from exc

    def get_float(self) -> float:
        raw = self.get()
        try:
            return float(raw)
        except ValueError as exc:
            raise ValueError(f"{self.name}={raw!r} is not a number") from exc

    def get_bool(self) -> bool:
        return self.get().strip().lower() in {"1", "true", "yes", "on"}


REGISTRY: dict[str, Setting] = {}


def setting(name: str, default: str, doc: str, scope: str = "all") -> Setting:
    if not name.startswith("HERALD_"):
        raise ValueError(f"setting {name} must start with HERALD_")
    s = Setting(name, default, doc, scope)
    REGISTRY[name] = s
    return s


# --- common to every process -------------------------------------------------
LOG_LEVEL = setting("HERALD_LOG_LEVEL", "INFO", "Log level (DEBUG, INFO, WARNING, ERROR).")
LOG_FORMAT = setting("HERALD_LOG_FORMAT", "json", "Log format: json (one object per line) or text.")
NATS_URL = setting("HERALD_NATS_URL", "nats://127.0.0.1:4222", "NATS server URL(s) with JetStream, comma separated.")
REDIS_URL = setting(
    "HERALD_REDIS_URL", "redis://127.0.0.1:6379/0", "Redis URL (standalone Redis; the stats Lua scripts need one node).",
    "stats, gateways",
)
GRPC_ADDR = setting(
    "HERALD_GRPC_ADDR", "127.0.0.1:0",
    "host:port the process's gRPC server binds (port 0 picks a free one).",
    "campaigns, recipients, stats",
)
METRICS_ADDR = setting(
    "HERALD_METRICS_ADDR", "127.0.0.1:0",
    "host:port of the Prometheus /metrics HTTP endpoint (port 0 picks a free one).",
)
TOKENS_FILE = setting(
    "HERALD_TOKENS_FILE", "",
    "JSON file mapping bearer tokens to principals {token: {workspace, roles, pii, name}}. "
    "Empty = development mode: every caller is an admin of the workspace in x-herald-workspace "
    "metadata (default 'default').",
    "campaigns, recipients, stats",
)
SERVICE_TOKEN = setting(
    "HERALD_SERVICE_TOKEN", "",
    "Bearer token this process presents when it calls another Herald service (campaigns calls "
    "recipients; stats calls campaigns). Its principal needs the service role and pii.",
    "campaigns, stats",
)
DEV_MODE = setting(
    "HERALD_DEV_MODE", "0",
    "1 = development mode (what `make run` sets): the email gateway makes its own random "
    "tracking key when none is configured (kept in HERALD_TRACKING_DEV_KEY_FILE) and senders "
    "are registered to the first workspace that uses them. Outside development mode a gateway "
    "without configured signing keys refuses to start.",
)
READY_FILE = setting(
    "HERALD_READY_FILE", "",
    "If set, the process writes a JSON line with its bound addresses here once serving "
    "(used by `make run` and the tests to learn port-0 addresses).",
)
DB_URL = setting(
    "HERALD_DB_URL", "sqlite+aiosqlite:///var/herald-{service}.db",
    "SQLAlchemy async URL of the service's database; {service} is replaced by the service "
    "name. PostgreSQL: postgresql+asyncpg://user@host/db.",
    "campaigns, recipients",
)

# --- producers of message events (gateways, campaigns) ----------------------
EVENT_BATCH_MAX = setting(
    "HERALD_EVENT_BATCH_MAX", "256",
    "Most message events a producer puts in one bus message (a MessageEventBatch on "
    "events.message.<kind>; at most 512 KiB each). 1 = one event per bus message, the only "
    "form a release before batches reads: during a rolling upgrade set 1 on the producers "
    "until the campaigns and stats services run a release that reads batches.",
    "gateways, campaigns",
)

# --- campaigns ---------------------------------------------------------------
RECIPIENTS_ADDR = setting(
    "HERALD_RECIPIENTS_ADDR", "127.0.0.1:50052", "host:port of RecipientService.", "campaigns, cli"
)

# --- CLI ---------------------------------------------------------------------
GC_GEN0_THRESHOLD = setting(
    "HERALD_GC_GEN0_THRESHOLD", "50000",
    "Allocations between young-generation garbage collections once a process is ready "
    "(Python's default is 700; start-up objects are also frozen out of collection). The "
    "gateways allocate a few dozen short-lived objects per message: 700 meant a collection "
    "every ~20 messages (~10% of the SMPP gateway's CPU). 0 keeps Python's defaults.",
)
CAMPAIGNS_ADDR = setting(
    "HERALD_CAMPAIGNS_ADDR", "127.0.0.1:50051",
    "host:port of CampaignService (stats asks it about campaigns it has no events for).",
    "stats, cli")
STATS_ADDR = setting(
    "HERALD_STATS_ADDR", "127.0.0.1:50053",
    "host:port of StatsService (campaigns asks it for ReconcileCampaign; the CLI for stats).",
    "campaigns, cli")
TOKEN = setting("HERALD_TOKEN", "", "Bearer token the CLI presents.", "cli")

# --- production mode and TLS (every gRPC server and inter-service client) -----
PRODUCTION = setting(
    "HERALD_PRODUCTION", "0",
    "1 = production mode (the Kubernetes manifests set it): every process checks its "
    "configuration at start-up and exits with status 2 and one log line naming each missing "
    "setting instead of falling back to a development default (local SQLite file, development "
    "auth, plaintext gRPC, loopback NATS/Redis, unsigned-key generation). HERALD_DEV_MODE=1 is "
    "refused in production mode.",
)
TLS_CERT_FILE = setting(
    "HERALD_TLS_CERT_FILE", "",
    "PEM certificate (chain) of this process. With HERALD_TLS_KEY_FILE the gRPC server listens "
    "with TLS only (no plaintext port); this process also presents it as its client certificate "
    "when it calls another Herald service, so for mutual TLS it must allow both the server and "
    "the client extended key usage. Empty = plaintext gRPC (refused in production mode).",
)
TLS_KEY_FILE = setting(
    "HERALD_TLS_KEY_FILE", "",
    "PEM private key of HERALD_TLS_CERT_FILE (both or neither).",
)
TLS_CA_FILE = setting(
    "HERALD_TLS_CA_FILE", "",
    "PEM CA bundle. Clients (campaigns calling recipients and stats, stats calling campaigns, "
    "the CLI) connect with TLS and verify the server's certificate against it; empty = "
    "plaintext client connections (refused in production mode for processes that call "
    "another service). Servers verify client certificates against it when "
    "HERALD_TLS_CLIENT_AUTH is on.",
)
TLS_CLIENT_AUTH = setting(
    "HERALD_TLS_CLIENT_AUTH", "0",
    "1 (or require) = mutual TLS: the gRPC server refuses every connection whose client "
    "certificate is missing or not signed by HERALD_TLS_CA_FILE (which must then be set). "
    "Bearer tokens are still checked on top.",
    "campaigns, recipients, stats, gateways",
)
TLS_SERVER_NAME = setting(
    "HERALD_TLS_SERVER_NAME", "",
    "Name clients expect in the server certificate instead of the host in the address "
    "(e.g. when connecting by IP address or through a proxy). Empty = the address's host.",
    "campaigns, stats, cli",
)
HEALTH_ADDR = setting(
    "HERALD_HEALTH_ADDR", "",
    "host:port of an extra plaintext gRPC port that serves only grpc.health.v1 (no data, no "
    "reflection), for probes that cannot speak TLS such as the kubelet's gRPC probe. Empty = "
    "none; health is always served on HERALD_GRPC_ADDR too.",
)
