"""The SMTP pool against the real sink (aiosmtpd on a free port, in this process)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from herald.v1 import events_pb2 as e

from cli import procs
from gateways.email import mime, outcomes, sink
from gateways.email.smtp_pool import SmtpConfig, SmtpConnectionError, SmtpPool, SmtpReplyError

K = e.MessageEventKind


class CountingSink(sink.SinkHandler):
    """Remembers the client port of every accepted message: one port, one connection."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.peers: set[Any] = set()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.peers.add(session.peer)
        return await super().handle_DATA(server, session, envelope)


def message(n: int) -> bytes:
    return mime.build(headers=[("Message-ID", f"<pool-{n}@example.com>"), ("From", "a@example.com"),
                               ("To", "b@example.com"), ("Subject", f"n{n}")], text=f"body {n}", html="")


async def test_connections_are_reused_and_bounded(tmp_path: Path) -> None:
    handler = CountingSink(tmp_path / "mail")
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, hostname="sink", loop=loop), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = SmtpPool(SmtpConfig("127.0.0.1", port, timeout=5), size=3)
    try:
        replies = await asyncio.gather(*(pool.send("a@example.com", "b@example.com", message(i))
                                         for i in range(30)))
        assert all(r.startswith("2.0.0 OK queued as") for r in replies)
        # a refusal leaves the connection usable (the client resets the envelope)
        with pytest.raises(SmtpReplyError) as err:
            await pool.send("a@example.com", "reject-x@example.com", message(99))
        o = outcomes.from_exception(err.value)
        assert (o.kind, o.code, o.enhanced) == (K.MESSAGE_EVENT_KIND_FAILED, "550", "5.1.1")
        await pool.send("a@example.com", "b@example.com", message(100))
    finally:
        await pool.close()
        server.close()
        await server.wait_closed()
    assert handler.accepted == 31
    assert 1 <= len(handler.peers) <= 3
    assert len(list((tmp_path / "mail").glob("*.eml"))) == 31


async def test_unreachable_relay_is_a_deferral(tmp_path: Path) -> None:
    pool = SmtpPool(SmtpConfig("127.0.0.1", procs.free_port(), timeout=2), size=1)
    with pytest.raises(SmtpConnectionError) as err:
        await pool.send("a@example.com", "b@example.com", message(1))
    o = outcomes.from_exception(err.value)
    assert o.kind == K.MESSAGE_EVENT_KIND_DEFERRED and o.code == ""
    assert o.description.startswith("connection error")
    # the relay comes up on that port: the same pool recovers without a restart
    server, handler, _port = await sink.start(tmp_path / "mail", "127.0.0.1", pool.cfg.port)
    try:
        await pool.send("a@example.com", "b@example.com", message(2))
    finally:
        await pool.close()
        server.close()
        await server.wait_closed()
    assert handler.accepted == 1
