"""gRPC server bootstrap: metrics and auth + error interceptors, TLS (shared.tls),
grpc.health.v1 (also on an optional plaintext health-only port), reflection, graceful
shutdown on SIGTERM/SIGINT, and the process's /metrics endpoint."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
import uuid
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from shared import auth, config, tls
from shared.errors import HeraldError
from shared.grpc_metrics import MetricsInterceptor
from shared.metrics import serve_metrics

log = logging.getLogger("herald.grpc")

_OPEN_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


def _method_name(full: str) -> str:
    return full.rsplit("/", 1)[-1]


class HeraldInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates the caller, binds the principal and maps HeraldError to a rich status
    (MetricsInterceptor, before it, records the outcome)."""

    def __init__(self, authenticator: auth.Authenticator) -> None:
        self.authenticator = authenticator

    async def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None or details.method.startswith(_OPEN_PREFIXES):
            return handler
        method = _method_name(details.method)
        authn = self.authenticator

        def prologue(context: grpc.aio.ServicerContext) -> auth.Principal:
            return authn.authenticate(context.invocation_metadata())

        async def fail(context: grpc.aio.ServicerContext, exc: Exception) -> None:
            if isinstance(exc, HeraldError):
                await context.abort_with_status(exc.to_status())
            raise exc

        async def internal(context: grpc.aio.ServicerContext) -> None:
            # The client gets an id to quote, never the exception's text (it can carry SQL,
            # parameters or addresses); the log line under that id has the whole trace.
            error_id = uuid.uuid4().hex[:12]
            log.exception("unhandled error", extra={"method": method, "error_id": error_id})
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error (error id {error_id})")

        def answering(inner: Callable) -> Callable:
            """One answer per call (unary, client stream): auth, then errors as statuses."""
            async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    auth.bind(prologue(context))
                    resp = await inner(request, context)
                except HeraldError as exc:
                    await fail(context, exc)
                except (asyncio.CancelledError, grpc.aio.AbortError):
                    raise
                except NotImplementedError:  # a generated servicer's default body
                    await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented")
                except Exception:
                    await internal(context)
                return resp
            return call

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                answering(handler.unary_unary), handler.request_deserializer,
                handler.response_serializer)
        if handler.unary_stream:
            inner_s = handler.unary_stream

            async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    auth.bind(prologue(context))
                    async for item in inner_s(request, context):
                        yield item
                except HeraldError as exc:
                    await fail(context, exc)
                except (asyncio.CancelledError, grpc.aio.AbortError):
                    raise
                except Exception:
                    await internal(context)

            return grpc.unary_stream_rpc_method_handler(
                stream, handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                answering(handler.stream_unary), handler.request_deserializer,
                handler.response_serializer)
        return handler


def tune_gc() -> None:
    """Freeze what start-up allocated (never scanned again) and collect the young generation
    less often (HERALD_GC_GEN0_THRESHOLD)."""
    gen0 = config.GC_GEN0_THRESHOLD.get_int()
    if gen0 > 0:
        gc.collect()
        gc.freeze()
        gc.set_threshold(gen0, 20, 50)


class ServiceRuntime:
    """One process's gRPC server, health, reflection, metrics and signal handling."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.stop_event = asyncio.Event()
        self.health = health.aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.health_server: grpc.aio.Server | None = None
        self.grpc_port = 0
        self.health_port = 0
        self.metrics_port = 0
        self.service_names: list[str] = []

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)

    def start_metrics(self) -> int:
        self.metrics_port = serve_metrics(config.METRICS_ADDR.get())
        return self.metrics_port

    async def start_grpc(self, registrations: list[tuple[Callable, Any, str]]) -> int:
        """registrations: (add_XServicer_to_server, servicer, full service name).

        Listens with TLS when HERALD_TLS_CERT_FILE/KEY_FILE are set, else in plaintext
        (refused in production mode); HERALD_HEALTH_ADDR adds a plaintext health-only port."""
        credentials = tls.server_credentials()
        if credentials is None and config.PRODUCTION.get_bool():
            raise tls.TlsConfigError(f"{config.TLS_CERT_FILE.name} and {config.TLS_KEY_FILE.name} "
                                     "are not set: production mode refuses a plaintext gRPC server")
        metrics = MetricsInterceptor()
        self.server = grpc.aio.server(interceptors=[metrics, HeraldInterceptor(auth.Authenticator())])
        for add, servicer, full_name in registrations:
            add(servicer, self.server)
            self.service_names.append(full_name)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        served = [*self.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                  reflection.SERVICE_NAME]
        reflection.enable_server_reflection(served, self.server)
        metrics.preregister(served)
        addr = config.GRPC_ADDR.get()
        if credentials is None:
            self.grpc_port = self.server.add_insecure_port(addr)
        else:
            self.grpc_port = self.server.add_secure_port(addr, credentials)
        await self.server.start()
        await self._start_health_port()
        for svc in [*self.service_names, ""]:
            await self.health.set(svc, health_pb2.HealthCheckResponse.SERVING)
        return self.grpc_port

    async def _start_health_port(self) -> None:
        """Plaintext grpc.health.v1 alone, for probes that cannot speak TLS (the kubelet's)."""
        addr = config.HEALTH_ADDR.get()
        if not addr:
            return
        self.health_server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.health_server)
        self.health_port = self.health_server.add_insecure_port(addr)
        await self.health_server.start()

    def write_ready(self, **extra: Any) -> None:
        tune_gc()
        info = {"service": self.name, "grpc_port": self.grpc_port,
                "metrics_port": self.metrics_port, **extra}
        if self.health_server is not None:
            info["health_port"] = self.health_port
        log.info("ready", extra={k: v for k, v in info.items() if k != "service"})
        path = config.READY_FILE.get()
        if path:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(info) + "\n")

    async def wait(self) -> None:
        await self.stop_event.wait()

    async def shutdown(self, grace: float = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        if self.server is not None:
            await self.server.stop(grace)
        if self.health_server is not None:
            await self.health_server.stop(0)
