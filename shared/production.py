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
class Need:
    """One of `settings` must be given explicitly in the environment (a default does not count)."""

    settings: tuple[Setting, ...]
    why: str

    def problem(self) -> str | None:
        if any(os.environ.get(s.name, "").strip() for s in self.settings):
            return None
        return f"{' or '.join(s.name for s in self.settings)} ({self.why})"


@dataclass(frozen=True)
class Refuse:
    """A development switch that must be off."""

    setting: Setting
    why: str

    def problem(self) -> str | None:
        return f"{self.setting.name}=1 ({self.why})" if self.setting.get_bool() else None


Requirement = Need | Refuse


def need(*settings: Setting, why: str) -> Need:
    return Need(tuple(settings), why)


def _files_readable(settings: Iterable[Setting]) -> list[str]:
    out = []
    for s in settings:
        path = s.get()
        if path and not os.access(path, os.R_OK):
            out.append(f"{s.name}={path} (cannot read it)")
    return out


# Every process.
COMMON: list[Requirement] = [
    need(config.NATS_URL, why="else the loopback NATS"),
    Refuse(config.DEV_MODE, why="development mode is refused in production"),
]
# A process with a gRPC server (TLS only; health may also be served in plaintext).
GRPC_SERVER: list[Requirement] = [
    need(config.TLS_CERT_FILE, why="else plaintext gRPC"),
    need(config.TLS_KEY_FILE, why="else plaintext gRPC"),
]
# A gRPC server with authenticated RPCs (the gateways serve health and reflection only).
AUTHENTICATED: list[Requirement] = [
    need(config.TOKENS_FILE, why="else development auth: every caller is an admin"),
]
# A process that calls another Herald service.
CLIENT: list[Requirement] = [
    need(config.TLS_CA_FILE, why="else plaintext calls to other services"),
    need(config.SERVICE_TOKEN, why="else calls to other services carry no credentials"),
]
SQL: list[Requirement] = [need(config.DB_URL, why="else a local SQLite file")]
REDIS: list[Requirement] = [need(config.REDIS_URL, why="else the loopback Redis")]


def problems(requirements: Iterable[Requirement]) -> list[str]:
    """What stops this process from starting in production mode (empty: nothing)."""
    found = [p for r in requirements for p in [r.problem()] if p]
    try:
        if tls.client_auth_required() and not config.TLS_CA_FILE.get():
            found.append(f"{config.TLS_CA_FILE.name} (needed by {config.TLS_CLIENT_AUTH.name}=1)")
    except tls.TlsConfigError as exc:
        found.append(str(exc))
    return found + _files_readable([config.TLS_CERT_FILE, config.TLS_KEY_FILE,
                                    config.TLS_CA_FILE, config.TOKENS_FILE])


def enforce(process: str, requirements: Iterable[Requirement]) -> None:
    """In production mode, exit (status 2, one log line) if any requirement is not met."""
    if not config.PRODUCTION.get_bool():
        return
    found = problems(requirements)
    if not found:
        return
    shared_log.setup(process)
    logging.getLogger("herald.production").error(
        "production mode (%s=1): refusing to start without %s", config.PRODUCTION.name,
        "; ".join(found), extra={"missing": [p.split(" ", 1)[0] for p in found]})
    raise SystemExit(EXIT_CODE)
