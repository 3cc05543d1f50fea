"""The SMTP pool against the real sink (aiosmtpd on a free port, in this process)."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from herald.v1 import events_pb2 as e

from cli import procs
from gateways.email import mime, outcomes, sink
from gateways.email.smtp_pool import (
    RateLimiter,
    SmtpConfig,
    SmtpConnectionError,
    SmtpPool,
    SmtpReplyError,
)

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


def _self_signed(tmp_path: Path) -> ssl.SSLContext:
    key = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    return ctx


def _auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"herald", b"s3cret")
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


async def test_starttls_implicit_tls_and_auth(tmp_path: Path) -> None:
    tls = _self_signed(tmp_path)
    handler = sink.SinkHandler(tmp_path / "mail")
    loop = asyncio.get_running_loop()

    def smtp() -> SMTP:
        return SMTP(handler, hostname="sink", tls_context=tls, require_starttls=True,
                    authenticator=_auth, auth_require_tls=True, loop=loop)

    plain = await loop.create_server(smtp, "127.0.0.1", 0)
    implicit = await loop.create_server(
        lambda: SMTP(handler, hostname="sink", authenticator=_auth, auth_require_tls=False, loop=loop),
        "127.0.0.1", 0, ssl=tls)
    try:
        port = plain.sockets[0].getsockname()[1]
        good = dict(username="herald", password="s3cret", verify_tls=False, timeout=5)
        pool = SmtpPool(SmtpConfig("127.0.0.1", port, starttls="always", **good), size=1)  # type: ignore[arg-type]
        await pool.send("a@example.com", "b@example.com", message(1))
        await pool.close()
        # a wrong password is a reply error at the auth stage (-> CONFIG_ERROR failure)
        bad = SmtpPool(SmtpConfig("127.0.0.1", port, starttls="auto", username="herald",
                                  password="nope", verify_tls=False, timeout=5), size=1)
        with pytest.raises(SmtpReplyError) as err:
            await bad.send("a@example.com", "b@example.com", message(2))
        assert err.value.stage == "auth"
        await bad.close()
        # certificate verification is on by default: a self-signed relay is refused
        strict = SmtpPool(SmtpConfig("127.0.0.1", port, starttls="always", timeout=5), size=1)
        with pytest.raises(SmtpConnectionError):
            await strict.send("a@example.com", "b@example.com", message(3))
        await strict.close()
        iport = implicit.sockets[0].getsockname()[1]
        pool = SmtpPool(SmtpConfig("127.0.0.1", iport, tls=True, **good), size=1)  # type: ignore[arg-type]
        await pool.send("a@example.com", "b@example.com", message(4))
        await pool.close()
    finally:
        for s in (plain, implicit):
            s.close()
            await s.wait_closed()
    assert handler.accepted == 2


async def test_rate_limit_spaces_sends() -> None:
    lim = RateLimiter(rate=1000.0, burst=1)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for _ in range(20):
        await lim.acquire()
    # 20 sends at 1000/s with no burst cannot all happen at once (no upper bound asserted)
    assert loop.time() - t0 >= 0.015
