"""gRPC server metrics with the grpc-ecosystem (go-grpc-prometheus) names and labels, so its
dashboards and alerts apply: grpc_server_started_total, grpc_server_handled_total (grpc_code),
grpc_server_handling_seconds, grpc_server_msg_received_total, grpc_server_msg_sent_total.

grpc_type is unary / server_stream / client_stream / bidi_stream; grpc_code is the status
code as grpc-go names it (OK, InvalidArgument, Unavailable, ...). Streams count each message their handler yields or
receives through its request iterator; a streaming handler written as a coroutine with
context.write (gRPC's own health Watch) has its outcome recorded but not its messages.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from prometheus_client import Counter, Histogram

_LABELS = ("grpc_type", "grpc_service", "grpc_method")

STARTED = Counter("grpc_server_started_total", "Total number of RPCs started on the server.", _LABELS)
HANDLED = Counter(
    "grpc_server_handled_total",
    "Total number of RPCs completed on the server, regardless of success or failure.",
    [*_LABELS, "grpc_code"],
)
HANDLING = Histogram(
    "grpc_server_handling_seconds",
    "Histogram of response latency (seconds) of gRPC that had been application-level "
    "handled by the server.",
    _LABELS,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
MSG_RECEIVED = Counter(
    "grpc_server_msg_received_total", "Total number of RPC stream messages received on the server.", _LABELS
)
MSG_SENT = Counter(
    "grpc_server_msg_sent_total", "Total number of gRPC stream messages sent by the server.", _LABELS
)

def go_name(code: grpc.StatusCode) -> str:
    """The code as grpc-go spells it (InvalidArgument, Canceled, ...): the grpc_code values of
    go-grpc-prometheus, which the dashboards and alerts SREs already run are written for."""
    if code is grpc.StatusCode.CANCELLED:
        return "Canceled"
    return "OK" if code is grpc.StatusCode.OK else code.name.title().replace("_", "")


_CODE_NAMES: dict[Any, str] = {c: go_name(c) for c in grpc.StatusCode}
_CODE_NAMES.update({c.value[0]: go_name(c) for c in grpc.StatusCode})


def grpc_type(client_streaming: bool, server_streaming: bool) -> str:
    if client_streaming:
        return "bidi_stream" if server_streaming else "client_stream"
    return "server_stream" if server_streaming else "unary"


class _Method:
    """One method's labelled children, resolved once (labels() is the costly part)."""

    __slots__ = ("labels", "started", "received", "sent", "handling", "handled")

    def __init__(self, kind: str, service: str, method: str) -> None:
        self.labels = (kind, service, method)
        self.started = STARTED.labels(*self.labels)
        self.received = MSG_RECEIVED.labels(*self.labels)
        self.sent = MSG_SENT.labels(*self.labels)
        self.handling = HANDLING.labels(*self.labels)
        self.handled: dict[str, Any] = {"OK": HANDLED.labels(*self.labels, "OK")}

    def done(self, code: str, start: float) -> None:
        child = self.handled.get(code)
        if child is None:
            child = self.handled[code] = HANDLED.labels(*self.labels, code)
        child.inc()
        self.handling.observe(time.perf_counter() - start)


def _status(context: grpc.aio.ServicerContext) -> str:
    """The code the handler finished with: set_code/abort, else OK."""
    code = context.code()
    return "OK" if code is None else _CODE_NAMES.get(code, "Unknown")


def _failure(exc: BaseException, context: grpc.aio.ServicerContext) -> str:
    if isinstance(exc, grpc.aio.AbortError):
        code = _status(context)
        return "Unknown" if code == "OK" else code
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "Canceled"  # the client went away or its deadline passed
    return "Unknown"  # what gRPC answers for an exception a handler lets through


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Records every RPC the server routes to a handler. Put it first in the server's
    interceptor list so it also sees what later interceptors refuse (e.g. UNAUTHENTICATED)."""

    def __init__(self) -> None:
        self._methods: dict[str, _Method] = {}

    def preregister(self, service_names: Iterable[str]) -> None:
        """Create started/handled{OK}/... at 0 for every method of these services, so rates and
        alerts see a method before its first call (as go-grpc-prometheus does)."""
        pool = descriptor_pool.Default()
        for name in service_names:
            try:
                service = pool.FindServiceByName(name)
            except KeyError:
                continue
            for m in service.methods:
                self._method(f"/{name}/{m.name}", grpc_type(m.client_streaming, m.server_streaming))

    def _method(self, full: str, kind: str) -> _Method:
        found = self._methods.get(full)
        if found is None:
            service, _, method = full.lstrip("/").rpartition("/")
            found = self._methods[full] = _Method(kind, service, method)
        return found

    async def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        m = self._methods.get(details.method) or self._method(
            details.method, grpc_type(handler.request_streaming, handler.response_streaming))
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _answering(m, handler.unary_unary, client_stream=False), handler.request_deserializer, handler.response_serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _server_stream(m, handler.unary_stream), handler.request_deserializer,
                handler.response_serializer)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _answering(m, handler.stream_unary, client_stream=True), handler.request_deserializer,
                handler.response_serializer)
        return grpc.stream_stream_rpc_method_handler(
            _bidi_stream(m, handler.stream_stream), handler.request_deserializer,
            handler.response_serializer)


def _answering(m: _Method, inner: Callable, client_stream: bool) -> Callable:
    """One answer per call: unary (one request counted) or client stream (each request
    counted as it is read)."""
    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        start = time.perf_counter()
        m.started.inc()
        if client_stream:
            request = _counted(m, request)
        else:
            m.received.inc()
        try:
            resp = await inner(request, context)
        except BaseException as exc:
            m.done(_failure(exc, context), start)
            raise
        code = _status(context)
        if code == "OK":
            m.sent.inc()
        m.done(code, start)
        return resp

    return call


async def _counted(m: _Method, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for req in requests:
        m.received.inc()
        yield req


def _writer(m: _Method, inner: Callable, counted: bool) -> Callable:
    """A streaming handler written as a coroutine with context.write (gRPC's health Watch):
    its outcome is recorded, the messages it writes are not counted."""

    async def writer(request: Any, context: grpc.aio.ServicerContext) -> None:
        start = time.perf_counter()
        m.started.inc()
        if not counted:
            m.received.inc()
        try:
            await inner(_counted(m, request) if counted else request, context)
        except BaseException as exc:
            m.done(_failure(exc, context), start)
            raise
        m.done(_status(context), start)

    return writer


def _server_stream(m: _Method, inner: Callable) -> Callable:
    if not inspect.isasyncgenfunction(inner):
        return _writer(m, inner, counted=False)

    async def server_stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        start = time.perf_counter()
        m.started.inc()
        m.received.inc()
        try:
            async for item in inner(request, context):
                m.sent.inc()
                yield item
        except BaseException as exc:  # GeneratorExit too: the client stopped reading
            m.done(_failure(exc, context), start)
            raise
        m.done(_status(context), start)

    return server_stream


def _bidi_stream(m: _Method, inner: Callable) -> Callable:
    if not inspect.isasyncgenfunction(inner):
        return _writer(m, inner, counted=True)

    async def bidi_stream(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        start = time.perf_counter()
        m.started.inc()
        try:
            async for item in inner(_counted(m, requests), context):
                m.sent.inc()
                yield item
        except BaseException as exc:
            m.done(_failure(exc, context), start)
            raise
        m.done(_status(context), start)

    return bidi_stream
