"""A pool of reused SMTP client connections to one relay, with PIPELINING and a rate limit.

Own small client on asyncio streams rather than aiosmtplib: neither aiosmtplib nor smtplib
pipelines, so each message cost four round trips (MAIL, RCPT, DATA, body) and most of the
gateway's CPU. With RFC 2920 PIPELINING a transaction is two writes and two waits:
MAIL+RCPT+DATA together, then the body. Relays without PIPELINING get lock-step commands.

Relay limits: `size` connections at most, `rate` messages/s over the whole pool (token
bucket with a small burst), at most `max_per_connection` messages per session. A
connection that saw a network error, a timeout or a 421 is closed and reopened on its next
use; one idle for a while is probed with NOOP first, since relays drop idle sessions.

Write gate: the relay cannot accept a message before the "." that ends its DATA. Given a
`commit` callable, a connection asks it right before writing a message's content (after the
354) and writes nothing of it when refused: the caller records "possibly sent" exactly for
the messages whose end went out (gateways.email.dedup.WriteGate batches those records).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field

from gateways.email.smtp_session import IDLE_PROBE_AFTER, MAX_REPLY, SmtpConnection
from gateways.email.smtp_types import (
    Accepted,
    Commit,
    NotCommitted,
    QueuedMail,
    RateLimiter,
    SmtpConfig,
    SmtpConfigError,
    SmtpConnectionError,
    SmtpError,
    SmtpReplyError,
    dot_stuff,
)

log = logging.getLogger("herald.email.smtp")

__all__ = ["IDLE_PROBE_AFTER", "MAX_REPLY", "Accepted", "Commit", "NotCommitted", "QueuedMail",
           "RateLimiter", "SmtpConfig", "SmtpConfigError", "SmtpConnection",
           "SmtpConnectionError", "SmtpError", "SmtpPool", "SmtpReplyError", "dot_stuff"]


@dataclass
class _Stats:
    connects: int = 0
    sent: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class SmtpPool:
    def __init__(self, cfg: SmtpConfig, size: int) -> None:
        if size < 1:
            raise ValueError("SMTP pool size must be >= 1")
        self.cfg = cfg
        self.size = size
        self.limiter = RateLimiter(cfg.rate, burst=max(1, min(size, 10)))
        self.stats = _Stats()
        self._idle: asyncio.LifoQueue[SmtpConnection] = asyncio.LifoQueue()
        for _ in range(size):
            self._idle.put_nowait(SmtpConnection(cfg))

    async def _ready(self, conn: SmtpConnection) -> None:
        if conn.is_connected:
            cap = self.cfg.max_per_connection
            if cap and conn.sent >= cap:
                await conn.quit()
            elif time.monotonic() - conn.last_used > IDLE_PROBE_AFTER:
                await conn.noop()
        if not conn.is_connected:
            self.stats.connects += 1
            await conn.connect()

    async def send(self, mail_from: str, rcpt: str, data: bytes) -> str:
        """Submit one message; returns the relay's final reply text. Raises SmtpReplyError,
        SmtpConnectionError or SmtpConfigError."""
        await self.limiter.acquire()
        conn = await self._idle.get()
        try:
            await self._ready(conn)
            reply = await conn.send(mail_from, rcpt, data)
            self.stats.sent += 1
            return reply
        except SmtpReplyError as exc:
            if exc.code == 421:  # service closing the channel
                conn.close()
            raise
        except SmtpConfigError:
            conn.close()
            raise
        finally:
            self._idle.put_nowait(conn)

    async def send_many(self, mails: list[QueuedMail], commit: Commit | None = None,
                        accepted: Accepted | None = None) -> None:
        """Submit a batch: as many connections as it needs drain one queue, each
        pipelining envelope and previous body (SmtpConnection.run_queue). Every mail's
        result is set (reply text or SmtpError); nothing raises but cancellation. With
        `commit`, a mail's content goes out only after commit(mail) returned None; with
        `accepted`, each mail the relay took is told as its answer arrives."""
        queue = deque(mails)

        async def drain() -> None:
            conn = await self._idle.get()
            try:
                while queue:
                    try:
                        await self._ready(conn)
                    except (SmtpError, OSError) as exc:
                        if isinstance(exc, SmtpConfigError):
                            conn.close()
                        if queue:  # like send(): the message that needed the session fails
                            queue.popleft().result = exc
                        continue
                    await conn.run_queue(queue, self.limiter, self.cfg.max_per_connection, commit,
                                         accepted)
                    if conn.is_connected and self.cfg.max_per_connection and \
                            conn.sent >= self.cfg.max_per_connection:
                        continue  # _ready() starts a fresh session
            finally:
                self._idle.put_nowait(conn)

        await asyncio.gather(*(drain() for _ in range(min(self.size, len(mails)))))
        self.stats.sent += sum(1 for m in mails if isinstance(m.result, str))

    async def close(self) -> None:
        conns = []
        while not self._idle.empty():
            conns.append(self._idle.get_nowait())
        await asyncio.gather(*(c.quit() for c in conns), return_exceptions=True)
