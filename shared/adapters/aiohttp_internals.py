"""aiohttp's internals that the email tracking server relies on, and nothing else.

The tracking server runs aiohttp's low-level `web.Server` with its own dispatch instead
of an Application and its router (~15 % of a pixel request's CPU). The router is also
what answers `Expect: 100-continue`, so the server does it itself, as aiohttp's own
expect handler does: write the interim response, then reset the writer's `output_size`,
which aiohttp reads to decide whether a response has started (an error after the 100
must still get its own response, and the access log's body size must not count it).

Relied on (checked by `self_check`): `StreamWriter.output_size` counts the bytes
written, and `RequestHandler.handle_error` consults it.
"""

from __future__ import annotations

import inspect
from typing import Any

from aiohttp import web
from aiohttp.http_writer import StreamWriter
from aiohttp.web_protocol import RequestHandler

from shared.adapters import AdapterError

DIST = "aiohttp"

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


async def send_continue(request: web.BaseRequest) -> None:
    """Answer `Expect: 100-continue`: the interim response, not counted as the start of
    the final one."""
    await request.writer.write(CONTINUE)
    request.writer.output_size = 0


# --- self-check ----------------------------------------------------------------------

class _Transport:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return False


class _Protocol:
    def __init__(self) -> None:
        self.transport = _Transport()


class _Request:
    def __init__(self, writer: StreamWriter) -> None:
        self.writer = writer


def _run(coro: Any) -> None:
    try:
        coro.send(None)
    except StopIteration:
        return
    coro.close()
    raise AdapterError(DIST, "StreamWriter.write of a small chunk now suspends")


def self_check() -> None:
    """A 100 Continue through a real StreamWriter on a stub transport: the bytes go out,
    output_size counted them and reads 0 after the reset; and aiohttp's error path still
    decides on output_size."""
    proto = _Protocol()
    try:
        writer = StreamWriter(proto, None)  # type: ignore[arg-type]
    except TypeError as exc:
        raise AdapterError(DIST, f"StreamWriter(protocol, loop): {exc}") from exc
    if getattr(writer, "output_size", None) != 0:
        raise AdapterError(DIST, "StreamWriter.output_size is gone")
    writer.output_size = 0
    before = writer.output_size
    _run(writer.write(CONTINUE))
    if writer.output_size - before != len(CONTINUE):
        raise AdapterError(DIST, "StreamWriter.output_size no longer counts the bytes written")
    if bytes(proto.transport.data) != CONTINUE:
        raise AdapterError(DIST, "StreamWriter.write no longer writes straight to the transport")
    _run(send_continue(_Request(writer)))  # type: ignore[arg-type]
    if writer.output_size != 0:
        raise AdapterError(DIST, "StreamWriter.output_size can no longer be reset")
    try:
        source = inspect.getsource(RequestHandler.handle_error)
    except (OSError, TypeError) as exc:
        raise AdapterError(DIST, f"RequestHandler.handle_error has no readable source ({exc})") from exc
    if "output_size" not in source:
        raise AdapterError(DIST, "RequestHandler.handle_error no longer decides on "
                                 "writer.output_size whether a response has started")
