"""SmtpPool.send_many: the next envelope rides with the previous body (RFC 2920)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gateways.email import sink
from gateways.email.smtp_pool import QueuedMail, SmtpConfig, SmtpPool, SmtpReplyError


class PipeRelay(asyncio.Protocol):
    """ESMTP with PIPELINING. RCPT reject-* -> 550 5.1.1; a body with "X-Close: 421"
    -> 421 and the connection closed (after reading what the client pipelined)."""

    def __init__(self, log: dict[str, Any]) -> None:
        self.log = log

    def connection_made(self, transport: Any) -> None:
        self.t = transport
        self.buf = b""
        self.data: bytes | None = None
        self.rcpt = ""
        self.log["connections"] += 1
        transport.write(b"220 pipe ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buf += data
        out = []
        while self.buf:
            if self.data is not None:
                i = (b"\r\n" + self.buf).find(b"\r\n.\r\n")
                if i < 0:
                    break
                body, self.buf = (b"\r\n" + self.buf)[2:i + 2], (b"\r\n" + self.buf)[i + 5:]
                self.data = None
                body = body.replace(b"\r\n..", b"\r\n.")
                if body.startswith(b".."):
                    body = body[1:]
                if b"X-Close: 421" in body:
                    out.append(b"421 4.3.2 closing\r\n")
                    self.t.write(b"".join(out))
                    self.t.close()
                    return
                self.log["accepted"].append((self.rcpt, body))
                out.append(b"250 2.0.0 OK\r\n")
                continue
            i = self.buf.find(b"\r\n")
            if i < 0:
                break
            line, self.buf = self.buf[:i], self.buf[i + 2:]
            verb = line[:4].upper()
            if verb == b"EHLO":
                out.append(b"250-pipe\r\n250-PIPELINING\r\n250 SIZE 10000000\r\n")
            elif verb == b"RCPT":
                self.rcpt = line.split(b"<", 1)[1].rstrip(b">").decode()
                out.append(b"550 5.1.1 no such user\r\n" if self.rcpt.startswith("reject-")
                           else b"250 2.1.5 OK\r\n")
            elif verb == b"DATA":
                if self.rcpt.startswith("reject-"):
                    out.append(b"554 5.5.1 no valid recipients\r\n")
                else:
                    self.data = b""
                    out.append(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                out.append(b"221 bye\r\n")
            else:  # MAIL, RSET, NOOP
                out.append(b"250 2.0.0 OK\r\n")
        if out:
            self.t.write(b"".join(out))


async def relay() -> tuple[asyncio.Server, int, dict[str, Any]]:
    log: dict[str, Any] = {"connections": 0, "accepted": []}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: PipeRelay(log), "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], log


def mail(i: int, rcpt: str = "", extra: str = "") -> QueuedMail:
    body = f"Subject: {i}\r\n{extra}\r\n.leading dot {i}\r\n..two\r\nend {i}\r\n".encode()
    return QueuedMail("a@example.com", rcpt or f"r{i}@example.com", body)


async def test_batch_with_a_refused_recipient_in_the_middle() -> None:
    server, port, log = await relay()
    pool = SmtpPool(SmtpConfig("127.0.0.1", port, timeout=5), size=3)
    mails = [mail(i, "reject-x@example.com" if i == 17 else "") for i in range(40)]
    try:
        await pool.send_many(mails)
        await pool.send_many([mail(99)])  # the sessions stay usable
    finally:
        await pool.close()
        server.close()
    assert isinstance(mails[17].result, SmtpReplyError) and mails[17].result.code == 550
    assert all(isinstance(m.result, str) for i, m in enumerate(mails) if i != 17)
    got = dict(log["accepted"])
    assert len(got) == 40 and "reject-x@example.com" not in got
    assert got["r5@example.com"] == mails[5].data  # dot-stuffing undone exactly
    assert log["connections"] <= 3


async def test_per_connection_cap_opens_fresh_sessions() -> None:
    server, port, log = await relay()
    pool = SmtpPool(SmtpConfig("127.0.0.1", port, timeout=5, max_per_connection=4), size=2)
    mails = [mail(i) for i in range(20)]
    try:
        await pool.send_many(mails)
    finally:
        await pool.close()
        server.close()
    assert all(isinstance(m.result, str) for m in mails)
    assert len(log["accepted"]) == 20 and log["connections"] >= 5


async def test_421_fails_one_and_the_pipelined_next_is_sent_again() -> None:
    server, port, log = await relay()
    pool = SmtpPool(SmtpConfig("127.0.0.1", port, timeout=5), size=1)
    mails = [mail(i, extra="X-Close: 421" if i == 3 else "") for i in range(8)]
    try:
        await pool.send_many(mails)
    finally:
        await pool.close()
        server.close()
    assert isinstance(mails[3].result, SmtpReplyError) and mails[3].result.code == 421
    assert all(isinstance(m.result, str) for i, m in enumerate(mails) if i != 3)
    assert sorted(r for r, _ in log["accepted"]) == sorted(f"r{i}@example.com" for i in range(8) if i != 3)
    assert log["connections"] == 2


async def test_relay_without_pipelining_goes_lock_step(tmp_path: Path) -> None:
    server, handler, port = await sink.start(tmp_path / "mail", "127.0.0.1", 0)
    pool = SmtpPool(SmtpConfig("127.0.0.1", port, timeout=5), size=2)
    mails = [mail(i, "reject-y@example.com" if i == 2 else "") for i in range(6)]
    try:
        await pool.send_many(mails)
    finally:
        await pool.close()
        server.close()
        await server.wait_closed()
    assert isinstance(mails[2].result, SmtpReplyError)
    assert handler.accepted == 5


async def test_unreachable_relay_fails_every_mail_as_connection_error() -> None:
    from cli import procs
    from gateways.email.smtp_pool import SmtpConnectionError

    pool = SmtpPool(SmtpConfig("127.0.0.1", procs.free_port(), timeout=2), size=2)
    mails = [mail(i) for i in range(3)]
    await pool.send_many(mails)
    assert all(isinstance(m.result, SmtpConnectionError) for m in mails)


async def test_write_gate_is_asked_before_each_body_and_a_refusal_writes_nothing(
        tmp_path: Path) -> None:
    """Each mail's content goes out only after the gate allowed it; a refused mail is never
    accepted (its session is dropped mid-DATA), the others are; pipelined and lock-step."""
    from gateways.email.smtp_pool import NotCommitted

    server, port, log = await relay()
    aio, handler, aio_port = await sink.start(tmp_path / "mail", "127.0.0.1", 0)
    for relay_port, accepted in ((port, lambda: [r for r, _ in log["accepted"]]),
                                 (aio_port, lambda: handler.accepted)):
        pool = SmtpPool(SmtpConfig("127.0.0.1", relay_port, timeout=5), size=2)
        mails = [mail(i) for i in range(12)]
        asked: list[tuple[str, Any]] = []

        async def gate(m: QueuedMail, accepted: Any = accepted, asked: list[Any] = asked) -> str | None:
            got = accepted()
            asked.append((m.rcpt, list(got) if isinstance(got, list) else got))
            return "claim lost" if m.rcpt == "r5@example.com" else None

        try:
            await pool.send_many(mails, gate)
        finally:
            await pool.close()
        assert sorted(r for r, _ in asked) == sorted(m.rcpt for m in mails)  # once each
        assert isinstance(mails[5].result, NotCommitted)
        assert all(isinstance(m.result, str) for i, m in enumerate(mails) if i != 5)
        if relay_port == port:  # at each ask, that mail had not reached the relay
            assert all(rcpt not in before for rcpt, before in asked)
            assert sorted(r for r, _ in log["accepted"]) == sorted(
                m.rcpt for i, m in enumerate(mails) if i != 5)
        else:
            assert handler.accepted == 11
    server.close()
    aio.close()
    await aio.wait_closed()
