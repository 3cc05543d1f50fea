"""The SMTP client's vocabulary: errors, the relay's configuration, a queued mail, the rate
limiter and dot-stuffing (shared by smtp_session.py and smtp_pool.py)."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any


class SmtpError(Exception):
    """Base of the pool's errors."""


class SmtpReplyError(SmtpError):
    """The relay answered with an error. stage: connect, ehlo, starttls, auth, mail, rcpt, data."""

    def __init__(self, code: int, message: str, stage: str) -> None:
        super().__init__(f"{code} {message} (at {stage})")
        self.code = code
        self.message = message
        self.stage = stage


class SmtpConnectionError(SmtpError):
    """Network trouble, timeout or a broken reply: the outcome of the transaction is open."""


class SmtpConfigError(SmtpError):
    """The relay lacks something the configuration requires (STARTTLS, AUTH)."""


class NotCommitted(SmtpError):
    """The write gate refused the message: none of its content was written (the session
    was closed mid-DATA, so the relay discards the transaction)."""


@dataclass
class SmtpConfig:
    host: str
    port: int
    timeout: float = 30.0
    username: str = ""
    password: str = ""
    starttls: str = "auto"  # auto (when offered) | always | never
    tls: bool = False  # implicit TLS (port 465 style)
    helo: str = ""
    verify_tls: bool = True
    rate: float = 0.0  # messages/s over the pool; 0 = unlimited
    max_per_connection: int = 0  # messages per session before a fresh one; 0 = unlimited

    def __post_init__(self) -> None:
        if self.starttls not in {"auto", "always", "never"}:
            raise ValueError(f"HERALD_SMTP_STARTTLS={self.starttls!r}: use auto, always or never")


def _tls_context(verify: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def dot_stuff(data: bytes) -> bytes:
    """CRLF-terminated data with leading dots doubled, plus the terminating "." line."""
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..") + b".\r\n"


class RateLimiter:
    """Spaces acquisitions 1/rate apart, allowing a burst of `burst` after idle time."""

    def __init__(self, rate: float, burst: int = 10) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.burst = max(burst, 1)
        self._next = 0.0

    async def acquire(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        slot = max(self._next, now - self.burst * self.interval)
        self._next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


class QueuedMail:
    """One message of SmtpPool.send_many: result is the reply text or an SmtpError."""

    __slots__ = ("mail_from", "rcpt", "data", "dot_free", "result", "started", "took", "ticket")

    def __init__(self, mail_from: str, rcpt: str, data: bytes, dot_free: bool = False,
                 ticket: Any = None) -> None:
        self.mail_from = mail_from
        self.rcpt = rcpt
        self.data = data
        self.dot_free = dot_free  # the composer knows no line starts with "."
        self.ticket = ticket  # the write gate's handle on this mail (opaque here)
        self.result: str | BaseException | None = None
        self.started = 0.0
        self.took = 0.0

    @property
    def body(self) -> bytes:
        if self.dot_free:  # skip the ~10 us scan of a 10 KB message
            return self.data + (b".\r\n" if self.data.endswith(b"\r\n") else b"\r\n.\r\n")
        return dot_stuff(self.data)

    def body_parts(self) -> tuple[bytes, bytes, int]:
        """(data, terminator, size): the body without copying a dot-free message."""
        if self.dot_free:
            end = b".\r\n" if self.data.endswith(b"\r\n") else b"\r\n.\r\n"
            return self.data, end, len(self.data) + len(end)
        body = dot_stuff(self.data)
        return body, b"", len(body)


# Asked right before a mail's content is written: None = write it, else why not.
Commit = Callable[[QueuedMail], Awaitable[str | None]]
Accepted = Callable[[QueuedMail], None]  # told of each mail the relay took, as its 250 arrives
