"""Prometheus /metrics endpoint per process, build info and the gRPC server metrics."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

from prometheus_client import Gauge, start_http_server

BUILD_INFO = Gauge(
    "herald_build_info",
    "Always 1: the Herald version, Python version and process name of this process.",
    ["version", "python", "process"],
)

# Entry-point module -> process name (the app.kubernetes.io/name of its Deployment).
PROCESS_NAMES = {
    "gateways.smpp": "smpp-gateway",
    "gateways.email": "email-gateway",
    "gateways.email.sender": "email-sender",
    "gateways.email.tracking_server": "email-tracking",
    "gateways.email.bounce_server": "email-bounces",
    "gateways.smpp.simulator": "smsc-simulator",
    "gateways.email.sink": "smtp-sink",
}


def herald_version() -> str:
    try:
        return metadata.version("herald")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def process_name() -> str:
    """'services.campaigns' -> 'campaigns', 'gateways.smpp' -> 'smpp-gateway', from the module
    run with `python -m`; the script's name otherwise."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is None or not spec.name:
        return (sys.argv[0].rsplit("/", 1)[-1] or "python").removesuffix(".py")
    module = spec.name.removesuffix(".__main__")
    return PROCESS_NAMES.get(module, module.rsplit(".", 1)[-1])


def set_build_info(process: str | None = None) -> None:
    BUILD_INFO.clear()
    BUILD_INFO.labels(herald_version(), platform.python_version(), process or process_name()).set(1)


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def serve_metrics(addr: str) -> int:
    """Start the /metrics HTTP server in a daemon thread; returns the bound port."""
    host, port = split_addr(addr)
    set_build_info()
    server, _thread = start_http_server(port, addr=host)
    return int(server.server_port)
