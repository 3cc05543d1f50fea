"""Routes: SMSC accounts, their binds, and the sender/prefix rules that choose one per message.

HERALD_SMPP_ROUTES (JSON, or @file) is a list (or {"routes": [...]}) of:
  {"name": "uk", "host": "10.0.0.5", "port": 2775, "system_id": "acme", "password": "secret",
   "binds": 2, "bind_mode": "transceiver" | "pair", "window": 100, "throughput": 50,
   "senders": ["HERALD", "+447700900000"], "prefixes": ["+447", "+44"],
   "id_format": "auto" | "hex:decimal" | ...}
A message goes to the route with the longest prefix matching its destination among the
routes whose sender list is empty or holds its sender; routes without prefixes match any
destination (prefix length 0); at equal length a route naming the sender beats one that
does not, then the earlier route wins. Without HERALD_SMPP_ROUTES
there is one route, "default", from HERALD_SMPP_HOST/PORT/... (the devstack form).

Receipt id mapping keys are per route, so two SMSCs may hand out the same id.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gateways.smpp import receipts, settings
from gateways.smpp.session import ClientConfig

ID_KINDS = ("hex", "decimal", "string")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class RouteConfigError(ValueError):
    pass


@dataclass(frozen=True)
class IdFormat:
    """How ids in submit_sm_resp and in receipts are written by one SMSC.

    auto: the mapping is stored under every reading of the id (as given, hex read as
    decimal, decimal read as hex; lower case, leading zeros dropped), and a receipt is
    looked up by its normalised id. <resp>:<receipt>: both are read as numbers in their
    base (string = compared as text, case-insensitively, leading zeros dropped) and the
    mapping has a single canonical key."""

    resp: str = "auto"
    receipt: str = "auto"

    @classmethod
    def parse(cls, value: str) -> IdFormat:
        v = (value or "auto").strip().lower()
        if v == "auto":
            return cls()
        resp, _, rcpt = v.partition(":")
        rcpt = rcpt or resp
        if resp not in ID_KINDS or rcpt not in ID_KINDS:
            raise RouteConfigError(f"id_format {value!r}: use auto or <resp>:<receipt> with {ID_KINDS}")
        if (resp == "string") != (rcpt == "string"):
            raise RouteConfigError(f"id_format {value!r}: string ids cannot be compared with numbers")
        return cls(resp, rcpt)

    @property
    def auto(self) -> bool:
        return self.resp == "auto"

    @staticmethod
    def _canonical(smsc_id: str, kind: str) -> str:
        s = smsc_id.strip()
        if kind == "string":
            return receipts.normalise_id(s)
        try:
            return str(int(s, 16 if kind == "hex" else 10))
        except ValueError:
            return receipts.normalise_id(s)  # not what the route promised: keep it matchable

    def store_keys(self, resp_id: str) -> list[str]:
        """Keys the mapping of an id from submit_sm_resp is stored under."""
        if self.auto:
            return receipts.id_keys(resp_id)
        return [self._canonical(resp_id, self.resp)]

    def lookup_key(self, receipt_id: str) -> str:
        if self.auto:
            return receipts.normalise_id(receipt_id)
        return self._canonical(receipt_id, self.receipt)


@dataclass(frozen=True)
class RouteConfig:
    name: str
    client: ClientConfig
    binds: int = 1
    senders: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    id_format: IdFormat = field(default_factory=IdFormat)

    def match(self, sender: str, destination: str) -> int | None:
        """Length of the matching prefix (0 for a catch-all), None if the route does not apply."""
        if self.senders and sender not in self.senders:
            return None
        if not self.prefixes:
            return 0
        digits = _digits(destination)
        best = None
        for p in self.prefixes:
            pd = _digits(p)
            if digits.startswith(pd) and (best is None or len(pd) > best):
                best = len(pd)
        return best


def _digits(number: str) -> str:
    s = "".join(ch for ch in number.strip() if ch.isdigit() or ch == "+")
    if s.startswith("+"):
        return s[1:]
    if s.startswith("00"):
        return s[2:]
    return s


def default_route() -> RouteConfig:
    client = ClientConfig.from_settings()
    return RouteConfig(
        name="default",
        client=replace(client, name="default", bind_mode=settings.BIND_MODE.get(),
                       throughput=settings.THROUGHPUT.get_float()),
        binds=max(1, settings.BINDS.get_int()),
        id_format=IdFormat.parse(settings.ID_FORMAT.get()),
    )


def parse_routes(text: str, base: ClientConfig | None = None) -> list[RouteConfig]:
    """Routes from JSON text; per-route fields default to the HERALD_SMPP_* values."""
    base = base or ClientConfig.from_settings()
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RouteConfigError(f"HERALD_SMPP_ROUTES is not JSON: {exc}") from exc
    if isinstance(data, dict):
        data = data.get("routes")
    if not isinstance(data, list) or not data:
        raise RouteConfigError("HERALD_SMPP_ROUTES must be a non-empty list of routes")
    out: list[RouteConfig] = []
    seen: set[str] = set()
    client_fields = {"host", "port", "system_id", "password", "system_type", "bind_mode",
                     "window", "response_timeout", "enquire_link_interval", "throughput"}
    for i, r in enumerate(data):
        if not isinstance(r, dict):
            raise RouteConfigError(f"route #{i} is not an object")
        name = str(r.get("name") or f"route{i}")
        if not _NAME.match(name) or name in seen:
            raise RouteConfigError(f"route name {name!r} must be unique, 1-32 of [A-Za-z0-9_-]")
        seen.add(name)
        unknown = set(r) - client_fields - {"name", "binds", "senders", "prefixes", "id_format"}
        if unknown:
            raise RouteConfigError(f"route {name}: unknown keys {sorted(unknown)}")
        kw = {k: r[k] for k in client_fields if k in r}
        for k in ("port", "window"):
            if k in kw:
                kw[k] = int(kw[k])
        for k in ("response_timeout", "enquire_link_interval", "throughput"):
            if k in kw:
                kw[k] = float(kw[k])
        client = replace(base, name=name, **kw)
        if client.bind_mode not in ("transceiver", "pair", "transmitter"):
            raise RouteConfigError(f"route {name}: bind_mode must be transceiver or pair")
        binds = int(r.get("binds", 1))
        if binds < 1 or client.window < 1:
            raise RouteConfigError(f"route {name}: binds and window must be >= 1")
        out.append(RouteConfig(
            name=name, client=client, binds=binds,
            senders=tuple(str(s) for s in r.get("senders", [])),
            prefixes=tuple(str(p) for p in r.get("prefixes", [])),
            id_format=IdFormat.parse(str(r.get("id_format", "auto"))),
        ))
    return out


def load() -> list[RouteConfig]:
    raw = settings.ROUTES.get().strip()
    if not raw:
        return [default_route()]
    if raw.startswith("@"):
        raw = Path(raw[1:]).read_text()
    return parse_routes(raw)


def choose(routes: list[RouteConfig], sender: str, destination: str) -> RouteConfig | None:
    if len(routes) == 1 and not routes[0].senders and not routes[0].prefixes:
        return routes[0]  # a single catch-all route (the common set-up)
    best: tuple[tuple[int, int], RouteConfig] | None = None
    for r in routes:
        length = r.match(sender, destination)
        if length is None:
            continue
        score = (length, 1 if r.senders else 0)
        if best is None or score > best[0]:
            best = (score, r)
    return best[1] if best else None
