"""Production mode (HERALD_PRODUCTION=1): each process checks its configuration before it
binds or connects anything and exits with status 2 and one log line naming every missing
setting, instead of falling back to a development default (a local SQLite file, development
auth, plaintext gRPC, loopback NATS/Redis/relay, a generated signing key).

Each entry point calls enforce() first thing with its own requirements: the shared lists
below plus its own settings.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

from shared import config, tls
from shared import log as shared_log
from shared.config import Setting

EXIT_CODE = 2


@dataclass(frozen=True)
class Problem:
    settings: tuple[str, ...]  # the settings to fix
    text: str


@dataclass(frozen=True)
class Need:
    """One of `settings` must be given explicitly in the environment (a default does not count)."""

    settings: tuple[Setting, ...]
    fallback: str  # what the process would use instead

    def problem(self) -> Problem | None:
        if any(os.environ.get(s.name, "").strip() for s in self.settings):
            return None
        names = tuple(s.name for s in self.settings)
        return Problem(names, f"{' or '.join(names)} not set (would fall back to {self.fallback})")


@dataclass(frozen=True)
class Refuse:
    """A development switch that must be off."""

    setting: Setting
    what: str

    def problem(self) -> Problem | None:
        if not self.setting.get_bool():
            return None
        return Problem((self.setting.name,), f"{self.setting.name}={self.setting.get()} ({self.what})")


Requirement = Need | Refuse


def need(*settings: Setting, fallback: str) -> Need:
    return Need(tuple(settings), fallback)


def _unreadable(settings: Iterable[Setting]) -> list[Problem]:
    return [Problem((s.name,), f"{s.name}={s.get()} cannot be read") for s in settings
            if s.get() and not os.access(s.get(), os.R_OK)]


# Every process.
COMMON: list[Requirement] = [
    need(config.NATS_URL, fallback="the loopback NATS"),
    Refuse(config.DEV_MODE, what="development mode"),
]
# A process with a gRPC server (TLS only; health may also be served in plaintext).
GRPC_SERVER: list[Requirement] = [
    need(config.TLS_CERT_FILE, fallback="plaintext gRPC"),
    need(config.TLS_KEY_FILE, fallback="plaintext gRPC"),
]
# A gRPC server with authenticated RPCs (the gateways serve health and reflection only).
AUTHENTICATED: list[Requirement] = [
    need(config.TOKENS_FILE, fallback="development auth, every caller an admin"),
]
# A process that calls another Herald service.
CLIENT: list[Requirement] = [
    need(config.TLS_CA_FILE, fallback="plaintext calls to other services"),
    need(config.SERVICE_TOKEN, fallback="calls to other services without credentials"),
]
SQL: list[Requirement] = [need(config.DB_URL, fallback="a local SQLite file")]
REDIS: list[Requirement] = [need(config.REDIS_URL, fallback="the loopback Redis")]


def problems(requirements: Iterable[Requirement]) -> list[Problem]:
    """What stops this process from starting in production mode (empty: nothing)."""
    found = [p for r in requirements for p in [r.problem()] if p]
    try:
        if tls.client_auth_required() and not config.TLS_CA_FILE.get():
            found.append(Problem((config.TLS_CA_FILE.name,), f"{config.TLS_CA_FILE.name} not set "
                                 f"(needed by {config.TLS_CLIENT_AUTH.name})"))
    except tls.TlsConfigError as exc:
        found.append(Problem((config.TLS_CLIENT_AUTH.name,), str(exc)))
    return found + _unreadable([config.TLS_CERT_FILE, config.TLS_KEY_FILE, config.TLS_CA_FILE,
                                config.TOKENS_FILE])


def enforce(process: str, requirements: Iterable[Requirement]) -> None:
    """In production mode, exit (status 2, one log line) if any requirement is not met."""
    if not config.PRODUCTION.get_bool():
        return
    found = problems(requirements)
    if not found:
        return
    shared_log.setup(process)
    logging.getLogger("herald.production").error(
        "production mode (%s=1): refusing to start: %s", config.PRODUCTION.name,
        "; ".join(p.text for p in found),
        extra={"settings": ",".join(dict.fromkeys(n for p in found for n in p.settings))})
    raise SystemExit(EXIT_CODE)
