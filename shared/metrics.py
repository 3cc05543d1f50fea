"""Prometheus /metrics endpoint per process and the gRPC server metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

GRPC_REQUESTS = Counter(
    "herald_grpc_requests_total", "gRPC requests handled, by method and status code.",
    ["method", "code"],
)
GRPC_LATENCY = Histogram(
    "herald_grpc_request_duration_seconds", "gRPC request handling time.", ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def serve_metrics(addr: str) -> int:
    """Start the /metrics HTTP server in a daemon thread; returns the bound port."""
    host, port = split_addr(addr)
    server, _thread = start_http_server(port, addr=host)
    return int(server.server_port)
