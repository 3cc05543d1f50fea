"""A small pool of reused aiosmtplib connections to one relay.

SMTP has no pipelining in aiosmtplib (nor smtplib): one transaction per connection at a
time, so throughput comes from several long-lived connections. A connection that saw a
network error or a 421 is dropped and reopened on its next use; one idle for a while
is probed with NOOP first, since relays close idle sessions silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from dataclasses import dataclass, field

import aiosmtplib

log = logging.getLogger("herald.email.smtp")

IDLE_PROBE_AFTER = 20.0


@dataclass
class SmtpConfig:
    host: str
    port: int
    timeout: float = 30.0
    username: str = ""
    password: str = ""
    starttls: str = "auto"  # auto | always | never
    helo: str = ""


@dataclass
class _Conn:
    client: aiosmtplib.SMTP
    last_used: float = field(default_factory=time.monotonic)


class SmtpPool:
    def __init__(self, cfg: SmtpConfig, size: int) -> None:
        if size < 1:
            raise ValueError("SMTP pool size must be >= 1")
        self.cfg = cfg
        self.size = size
        self._idle: asyncio.Queue[_Conn] = asyncio.Queue()
        for _ in range(size):
            self._idle.put_nowait(_Conn(self._client()))

    def _client(self) -> aiosmtplib.SMTP:
        cfg = self.cfg
        start_tls = {"auto": None, "always": True, "never": False}.get(cfg.starttls)
        if cfg.starttls not in {"auto", "always", "never"}:
            raise ValueError(f"HERALD_SMTP_STARTTLS={cfg.starttls!r}: use auto, always or never")
        return aiosmtplib.SMTP(
            hostname=cfg.host, port=cfg.port, timeout=cfg.timeout,
            username=cfg.username or None, password=cfg.password or None,
            start_tls=start_tls, local_hostname=cfg.helo or socket.gethostname(),
        )

    async def _ready(self, conn: _Conn) -> None:
        client = conn.client
        if client.is_connected and time.monotonic() - conn.last_used > IDLE_PROBE_AFTER:
            try:
                await client.noop()
            except (aiosmtplib.SMTPException, OSError):
                await self._drop(conn)
        if not client.is_connected:
            await client.connect()

    async def _drop(self, conn: _Conn) -> None:
        with contextlib.suppress(Exception):
            conn.client.close()
        conn.client = self._client()

    async def send(self, mail_from: str, rcpt: str, data: bytes) -> str:
        """Submit one message; returns the relay's final reply text. Raises aiosmtplib
        errors (SMTPRecipientsRefused, SMTPResponseException, connection errors)."""
        conn = await self._idle.get()
        try:
            await self._ready(conn)
            _errors, reply = await conn.client.sendmail(mail_from, [rcpt], data)
            return reply
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == 421:  # service closing the channel
                await self._drop(conn)
            raise
        except aiosmtplib.SMTPRecipientsRefused:
            raise
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            await self._drop(conn)
            raise
        except asyncio.CancelledError:
            await self._drop(conn)  # the session is mid-transaction: never reuse it
            raise
        finally:
            conn.last_used = time.monotonic()
            self._idle.put_nowait(conn)

    async def close(self) -> None:
        conns = []
        while not self._idle.empty():
            conns.append(self._idle.get_nowait())
        for conn in conns:
            if conn.client.is_connected:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.client.quit(), 2)
            with contextlib.suppress(Exception):
                conn.client.close()
