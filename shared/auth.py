"""Bearer token -> principal (workspace, roles, pii) from a mounted tokens file.

Roles: viewer, operator, moderator, admin, master (lists across workspaces), service
(another Herald service acting for the workspace named in x-herald-workspace).
With no tokens file (development), every caller is an admin with pii in the workspace
named by x-herald-workspace, or 'default'.
"""

from __future__ import annotations

import contextvars
import json
from dataclasses import dataclass, field

import grpc

from shared import config
from shared.errors import denied, unauthenticated

WORKSPACE_HEADER = "x-herald-workspace"
DEFAULT_WORKSPACE = "default"


@dataclass(frozen=True)
class Principal:
    name: str
    workspace: str
    roles: frozenset[str] = field(default_factory=frozenset)
    pii: bool = False

    def has(self, *roles: str) -> bool:
        return bool(self.roles & ({"admin", "master"} | set(roles)))

    @property
    def master(self) -> bool:
        """May read across workspaces (admin alone may not)."""
        return "master" in self.roles

    def require(self, *roles: str) -> None:
        if not self.has(*roles):
            raise denied(f"{self.name} lacks role {' or '.join(roles)}")


_current: contextvars.ContextVar[Principal] = contextvars.ContextVar("herald_principal")


def current() -> Principal:
    return _current.get()


def load_tokens(path: str) -> dict[str, Principal]:
    with open(path, encoding="utf-8") as fh:
        raw = json.load(fh)
    out = {}
    for token, spec in raw.items():
        out[token] = Principal(
            name=spec.get("name", "token"),
            workspace=spec["workspace"],
            roles=frozenset(spec.get("roles", [])),
            pii=bool(spec.get("pii", False)),
        )
    return out


class Authenticator:
    def __init__(self, tokens_file: str | None = None) -> None:
        path = tokens_file if tokens_file is not None else config.TOKENS_FILE.get()
        self.tokens = load_tokens(path) if path else None

    def authenticate(self, metadata: tuple | None) -> Principal:
        md = {k: v for k, v in (metadata or ())}
        ws_header = md.get(WORKSPACE_HEADER, "")
        if self.tokens is None:
            return Principal("dev", ws_header or DEFAULT_WORKSPACE, frozenset({"admin"}), True)
        auth = md.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            raise unauthenticated("missing bearer token")
        principal = self.tokens.get(auth[7:].strip())
        if principal is None:
            raise unauthenticated("unknown bearer token")
        if "service" in principal.roles and ws_header:
            return Principal(principal.name, ws_header, principal.roles, principal.pii)
        return principal


def bind(principal: Principal) -> contextvars.Token:
    return _current.set(principal)


def call_metadata(workspace: str | None = None, token: str | None = None) -> tuple:
    """Metadata for an outgoing call (service-to-service or CLI)."""
    md: list[tuple[str, str]] = []
    tok = token if token is not None else config.SERVICE_TOKEN.get()
    if tok:
        md.append(("authorization", f"Bearer {tok}"))
    if workspace:
        md.append((WORKSPACE_HEADER, workspace))
    return tuple(md)


def grpc_code(err: Exception) -> grpc.StatusCode:
    return getattr(err, "code", grpc.StatusCode.UNKNOWN)
