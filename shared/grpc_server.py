"""gRPC server bootstrap: auth + error + metrics interceptor, grpc.health.v1, reflection,
graceful shutdown on SIGTERM/SIGINT, and the process's /metrics endpoint."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import signal
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from shared import auth, config
from shared.errors import HeraldError
from shared.metrics import GRPC_LATENCY, GRPC_REQUESTS, serve_metrics

log = logging.getLogger("herald.grpc")

_OPEN_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


def _method_name(full: str) -> str:
    return full.rsplit("/", 1)[-1]


class HeraldInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates the caller, binds the principal, maps HeraldError to a rich status
    and records per-method metrics."""

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
                GRPC_REQUESTS.labels(method, exc.code.name).inc()
                await context.abort_with_status(exc.to_status())
            raise exc

        async def internal(context: grpc.aio.ServicerContext) -> None:
            # The client gets an id to quote, never the exception's text (it can carry SQL,
            # parameters or addresses); the log line under that id has the whole trace.
            error_id = uuid.uuid4().hex[:12]
            log.exception("unhandled error", extra={"method": method, "error_id": error_id})
            GRPC_REQUESTS.labels(method, "INTERNAL").inc()
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error (error id {error_id})")

        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                start = time.perf_counter()
                try:
                    auth.bind(prologue(context))
                    resp = await inner(request, context)
                except HeraldError as exc:
                    await fail(context, exc)
                except (asyncio.CancelledError, grpc.aio.AbortError):
                    raise
                except NotImplementedError:  # a generated servicer's default body
                    GRPC_REQUESTS.labels(method, "UNIMPLEMENTED").inc()
                    await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented")
                except Exception:
                    await internal(context)
                finally:
                    GRPC_LATENCY.labels(method).observe(time.perf_counter() - start)
                GRPC_REQUESTS.labels(method, "OK").inc()
                return resp

            return grpc.unary_unary_rpc_method_handler(
                unary, handler.request_deserializer, handler.response_serializer
            )
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
                GRPC_REQUESTS.labels(method, "OK").inc()

            return grpc.unary_stream_rpc_method_handler(
                stream, handler.request_deserializer, handler.response_serializer
            )
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
        self.grpc_port = 0
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
        """registrations: (add_XServicer_to_server, servicer, full service name)."""
        self.server = grpc.aio.server(interceptors=[HeraldInterceptor(auth.Authenticator())])
        for add, servicer, full_name in registrations:
            add(servicer, self.server)
            self.service_names.append(full_name)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [*self.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME],
            self.server,
        )
        self.grpc_port = self.server.add_insecure_port(config.GRPC_ADDR.get())
        await self.server.start()
        for svc in [*self.service_names, ""]:
            await self.health.set(svc, health_pb2.HealthCheckResponse.SERVING)
        return self.grpc_port

    def write_ready(self, **extra: Any) -> None:
        tune_gc()
        info = {"service": self.name, "grpc_port": self.grpc_port,
                "metrics_port": self.metrics_port, **extra}
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
