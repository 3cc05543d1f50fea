"""gRPC channels to the three services (plain or TLS), stubs that remember which service a
call went to, and the hint printed when a service cannot be reached."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
from herald.v1 import campaigns_pb2_grpc as cgrpc
from herald.v1 import recipients_pb2_grpc as rgrpc
from herald.v1 import stats_pb2_grpc as sgrpc

from cli.contexts import ADDR_ENV, Resolved
from shared import auth

CALL_TIMEOUT = 30.0  # unary calls; streams (watch, downloads) run without a deadline
UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
STUBS = {"campaigns": cgrpc.CampaignServiceStub, "recipients": rgrpc.RecipientServiceStub,
         "stats": sgrpc.StatsServiceStub}


def _read(path: str) -> bytes:
    return Path(path).expanduser().read_bytes()


def channel(address: str, conf: Resolved) -> grpc.aio.Channel:
    if not conf.tls_on:
        return grpc.aio.insecure_channel(address)
    t = {k: s.value for k, s in conf.tls.items()}
    creds = grpc.ssl_channel_credentials(
        root_certificates=_read(t["ca_file"]) if t["ca_file"] else None,
        private_key=_read(t["key_file"]) if t["key_file"] else None,
        certificate_chain=_read(t["cert_file"]) if t["cert_file"] else None)
    options = [("grpc.ssl_target_name_override", t["server_name"])] if t["server_name"] else []
    return grpc.aio.secure_channel(address, creds, options=options)


class _Tracked:
    """A stub whose every call records its service (for the hint) and gets the CLI's
    metadata and, when unary, a deadline."""

    def __init__(self, name: str, stub: Any, owner: Clients) -> None:
        self._name, self._stub, self._owner = name, stub, owner

    def __getattr__(self, method: str) -> Any:
        target = getattr(self._stub, method)
        streaming = isinstance(target, grpc.aio.UnaryStreamMultiCallable)

        def call(request: Any, **kw: Any) -> Any:
            self._owner.last = self._name
            kw.setdefault("metadata", self._owner.metadata)
            if not streaming:
                kw.setdefault("timeout", CALL_TIMEOUT)
            return target(request, **kw)

        return call


class Clients:
    def __init__(self, conf: Resolved) -> None:
        self.conf = conf
        self.metadata = auth.call_metadata(workspace=conf.workspace.value, token=conf.token.value)
        self.last = "campaigns"
        self._channels: dict[str, grpc.aio.Channel] = {}
        for name in STUBS:
            addr = conf.addresses[name].value
            # One channel per distinct address: a gateway address serves all three.
            if addr not in self._channels:
                self._channels[addr] = channel(addr, conf)
        self.campaigns = self._stub("campaigns")
        self.recipients = self._stub("recipients")
        self.stats = self._stub("stats")

    def _stub(self, name: str) -> Any:
        return _Tracked(name, STUBS[name](self._channels[self.conf.addresses[name].value]), self)

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()


def unreachable_hint(conf: Resolved, service: str) -> str:
    src = conf.addresses[service]
    env = ADDR_ENV[service]
    lines = [f"could not reach the {service} service at {src.value} "
             f"({'TLS' if conf.tls_on else 'plaintext'}; address from {src.origin}).",
             f"Set it with --{service}-addr HOST:PORT, {env}=HOST:PORT, or in a context: "
             f"herald config set-context NAME --{service} HOST:PORT (then "
             f"herald config use-context NAME).",
             f"Contexts file: {conf.path}"
             + (f", context {conf.context!r}" if conf.context else ", no context in use")
             + "; `make run` writes a `local` context for the stack it starts."]
    return "\n".join(lines)
