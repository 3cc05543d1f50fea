"""JetStream publishes with one future per batch.

nats-py's publish_async adds a future, a NUID inbox and a parsed PubAck per message; here a
batch's HPUB lines go out in one write (shared.jsfast.wire.send_raw) with reply subjects
on one fast subscription, and the batch waits on one future for all of its acks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from nats.aio.client import Client as NATS

from shared.jsfast.wire import fast_subscribe, fast_unsubscribe, send_raw, status_line


def _header_block(msg_id: str, headers: dict[str, str]) -> bytes:
    lines = [f"NATS/1.0\r\nNats-Msg-Id: {msg_id}\r\n"]
    for name, value in headers.items():
        line = f"{name}: {value}"
        if "\r" in line or "\n" in line or ":" in name:
            raise ValueError(f"header with a line break or a colon in its name: {line!r}")
        lines.append(line + "\r\n")
    lines.append("\r\n")
    return "".join(lines).encode()


class PublishError(Exception):
    """JetStream refused (or never acknowledged) some of the messages of a batch."""


class _Batch:
    __slots__ = ("remaining", "future", "errors")

    def __init__(self, remaining: int, future: asyncio.Future[None]) -> None:
        self.remaining = remaining
        self.future = future
        self.errors: list[str] = []


class Publisher:
    """JetStream publishes with Nats-Msg-Id, acknowledged per batch: `publish_many`
    returns once the server has stored (or de-duplicated) every message, and raises
    PublishError / TimeoutError otherwise (safe to retry: the ids de-duplicate)."""

    def __init__(self, nc: NATS, timeout: float = 10.0) -> None:
        self.nc = nc
        self.timeout = timeout
        self._prefix = b""
        self._plen = 0
        self._n = 0
        self._waiting: dict[bytes, _Batch] = {}
        self._sub: Any = None

    async def start(self) -> Publisher:
        if self._sub is None:
            inbox = self.nc.new_inbox()
            self._prefix = (inbox + ".").encode()
            self._plen = len(self._prefix)
            self._sub = await fast_subscribe(self.nc, inbox + ".*", self._on_ack)
        return self

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await fast_unsubscribe(self.nc, self._sub)
            self._sub = None

    def _on_ack(self, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        batch = self._waiting.pop(subject[self._plen:], None)
        if batch is None:
            return  # timed out already
        if not data:  # a status message, e.g. 503: no JetStream stream for the subject
            status, desc = status_line(headers)
            batch.errors.append(f"{status or '?'} {desc or 'no responders'}")
        elif b'"error"' in data:
            batch.errors.append(data.decode(errors="replace"))
        batch.remaining -= 1
        if batch.remaining <= 0 and not batch.future.done():
            batch.future.set_result(None)

    async def publish_many(self, items: Sequence[tuple[str, bytes, str]
                                                 | tuple[str, bytes, str, dict[str, str]]]) -> None:
        """items: (subject, payload, Nats-Msg-Id), or with a fourth element: more headers."""
        if not items:
            return
        if self._sub is None:
            await self.start()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        batch = _Batch(len(items), fut)
        waiting = self._waiting
        prefix = self._prefix
        tokens: list[bytes] = []
        cmds: list[bytes] = []
        n = self._n
        for item in items:
            subject, payload, msg_id = item[0], item[1], item[2]
            if "\r" in msg_id or "\n" in msg_id:
                raise ValueError(f"message id with a line break: {msg_id!r}")
            n += 1
            token = b"%x" % n
            tokens.append(token)
            waiting[token] = batch
            if len(item) == 3:
                hdr = b"NATS/1.0\r\nNats-Msg-Id: %s\r\n\r\n" % msg_id.encode()
            else:
                hdr = _header_block(msg_id, item[3])  # type: ignore[misc]
            cmds.append(b"HPUB %s %s%s %d %d\r\n%s%s\r\n" % (
                subject.encode(), prefix, token, len(hdr), len(hdr) + len(payload),
                hdr, payload))
        self._n = n
        try:
            await send_raw(self.nc, cmds)
            async with asyncio.timeout(self.timeout):
                await fut
        finally:
            if batch.remaining > 0:  # timed out or failed to send: forget the tokens
                for t in tokens:
                    waiting.pop(t, None)
        if batch.errors:
            raise PublishError(f"{len(batch.errors)} of {len(items)} not stored: {batch.errors[0]}")
