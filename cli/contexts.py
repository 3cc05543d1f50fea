"""Named contexts (like kubectl's): where the Herald services are, the token, the workspace
and TLS, kept in one file; and how a setting is resolved: flag > environment > context >
default, remembering where each value came from so a failed connection can say so."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from cli import settings
from shared import config

SERVICES = ("campaigns", "recipients", "stats")
TLS_KEYS = ("ca_file", "cert_file", "key_file", "server_name")
CONTEXT_KEYS = (*SERVICES, "server", "token", "workspace")
DEFAULTS = {"campaigns": config.CAMPAIGNS_ADDR.default, "recipients": config.RECIPIENTS_ADDR.default,
            "stats": config.STATS_ADDR.default}
ADDR_ENV = {"campaigns": config.CAMPAIGNS_ADDR.name, "recipients": config.RECIPIENTS_ADDR.name,
            "stats": config.STATS_ADDR.name}
TLS_ENV = {"ca_file": settings.TLS_CA_FILE.name, "cert_file": settings.TLS_CERT_FILE.name,
           "key_file": settings.TLS_KEY_FILE.name, "server_name": settings.TLS_SERVER_NAME.name}


class ConfigError(Exception):
    """The contexts file cannot be read, or names a context it does not have."""


def config_path() -> Path:
    explicit = os.environ.get(settings.CONFIG.name, "")
    if explicit:
        return Path(explicit).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "herald" / "config.yaml"


@dataclass
class ConfigFile:
    path: Path
    current: str = ""
    contexts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> ConfigFile:
        path = path or config_path()
        if not path.exists():
            return cls(path)
        text = path.read_text(encoding="utf-8")
        try:
            if path.suffix in (".yaml", ".yml"):
                raw = yaml.safe_load(text) or {}
            else:
                raw = json.loads(text or "{}")
        except (ValueError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot parse: {exc}") from exc
        if not isinstance(raw, dict) or not isinstance(raw.get("contexts", {}), dict):
            raise ConfigError(f"{path}: expected a mapping with 'contexts'")
        return cls(path, str(raw.get("current-context") or ""),
                   {str(k): dict(v or {}) for k, v in raw.get("contexts", {}).items()})

    def save(self) -> None:
        data = {"current-context": self.current, "contexts": self.contexts}
        if self.path.suffix in (".yaml", ".yml"):
            text = yaml.safe_dump(data, sort_keys=False)
        else:
            text = json.dumps(data, indent=2) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole then renamed (a reader never sees half a file), 0600: it holds tokens.
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".config-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def set_context(self, name: str, values: dict[str, Any], tls: dict[str, str]) -> dict[str, Any]:
        """Merge the given (non-empty) values into context `name`, creating it."""
        ctx = self.contexts.setdefault(name, {})
        ctx.update({k: v for k, v in values.items() if v is not None})
        if any(v is not None for v in tls.values()):
            merged = {**ctx.get("tls", {}), **{k: v for k, v in tls.items() if v is not None}}
            ctx["tls"] = {k: v for k, v in merged.items() if v not in ("", None)}
        for key in [k for k, v in ctx.items() if v == ""]:
            del ctx[key]  # an empty value given on purpose clears the key
        return ctx


@dataclass
class Source:
    value: str
    origin: str  # "flag --campaigns-addr", "env HERALD_CAMPAIGNS_ADDR", "context 'local'", "default"


@dataclass
class Resolved:
    addresses: dict[str, Source]
    token: Source
    workspace: Source
    tls: dict[str, Source]
    tls_on: bool
    context: str  # "" when no context applies
    path: Path


def _pick(candidates: list[tuple[Any, str]], default: str = "") -> Source:
    for value, origin in candidates:
        if value not in (None, ""):
            return Source(str(value), origin)
    return Source(default, "default")


def resolve(flags: dict[str, Any], env: dict[str, str] | None = None,
            cfg: ConfigFile | None = None) -> Resolved:
    """flags: the command line's values (None when not given): campaigns_addr,
    recipients_addr, stats_addr, server, token, workspace, tls, tls_<key>, context."""
    env = dict(os.environ) if env is None else env
    cfg = cfg or ConfigFile.load()
    name = flags.get("context") or env.get(settings.CONTEXT.name, "") or cfg.current
    if name and name not in cfg.contexts:
        if flags.get("context") or env.get(settings.CONTEXT.name):
            raise ConfigError(f"no context {name!r} in {cfg.path} "
                              f"(have: {', '.join(sorted(cfg.contexts)) or 'none'})")
        name = ""  # a dangling current-context: fall back to the defaults
    ctx = cfg.contexts.get(name, {}) if name else {}
    in_ctx = f"context {name!r}"
    addresses = {}
    for svc in SERVICES:
        addresses[svc] = _pick([
            (flags.get(f"{svc}_addr"), f"flag --{svc}-addr"),
            (flags.get("server"), "flag --server"),
            (env.get(ADDR_ENV[svc]), f"env {ADDR_ENV[svc]}"),
            (env.get(settings.SERVER.name), f"env {settings.SERVER.name}"),
            (ctx.get(svc), f"{in_ctx} ({svc})"),
            (ctx.get("server"), f"{in_ctx} (server)"),
        ], DEFAULTS[svc])
    # HERALD_TOKEN set but empty means "no token" (a context's token is not used).
    token = (Source(env[config.TOKEN.name], f"env {config.TOKEN.name}")
             if flags.get("token") is None and config.TOKEN.name in env
             else _pick([(flags.get("token"), "flag --token"), (ctx.get("token"), in_ctx)]))
    workspace = _pick([(flags.get("workspace"), "flag --workspace"),
                       (env.get(settings.WORKSPACE.name), f"env {settings.WORKSPACE.name}"),
                       (ctx.get("workspace"), in_ctx)])
    ctx_tls = ctx.get("tls") or {}
    tls = {k: _pick([(flags.get(f"tls_{k}"), f"flag --tls-{k.replace('_', '-')}"),
                     (env.get(TLS_ENV[k]), f"env {TLS_ENV[k]}"),
                     (ctx_tls.get(k), in_ctx)]) for k in TLS_KEYS}
    tls_on = bool(flags.get("tls")) or bool(ctx_tls) or any(s.value for s in tls.values())
    return Resolved(addresses, token, workspace, tls, tls_on, name, cfg.path)
