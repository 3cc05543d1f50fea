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
import base64
import contextlib
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("herald.email.smtp")

IDLE_PROBE_AFTER = 20.0
MAX_REPLY = 1 << 20  # bytes of an unfinished reply before the session is given up


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


class SmtpConnection:
    """One SMTP session. Not safe for concurrent use: the pool hands it to one sender."""

    def __init__(self, cfg: SmtpConfig) -> None:
        self.cfg = cfg
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.extensions: dict[str, str] = {}
        self._rbuf = b""
        self._size_ext = False
        self.sent = 0
        self.last_used = time.monotonic()

    @property
    def is_connected(self) -> bool:
        return self.writer is not None and not self.writer.is_closing()

    # Replies are read in bulk (whatever the socket has) and parsed from a local buffer:
    # with pipelining four replies arrive together, and four StreamReader.readline calls
    # per message cost ~10 us more than one read() and a few finds (measured, fast sink).
    def _next_reply(self) -> tuple[int, str] | None:
        """A complete reply from the buffer, or None when more bytes are needed."""
        buf = self._rbuf
        i = buf.find(b"\n")
        if i < 0:
            return None
        line = buf[:i]
        if line[3:4] != b"-":  # single-line reply: the common case
            if len(line) < 3 or not line[:3].isdigit():
                raise SmtpConnectionError(f"malformed reply {line[:80]!r}")
            self._rbuf = buf[i + 1:]
            return int(line[:3]), line[4:].rstrip(b"\r").decode("utf-8", "replace")
        lines: list[str] = []
        start = 0
        while i >= 0:
            line = buf[start:i]
            if len(line) < 4 or not line[:3].isdigit():
                raise SmtpConnectionError(f"malformed reply {line[:80]!r}")
            lines.append(line[4:].rstrip(b"\r").decode("utf-8", "replace"))
            start = i + 1
            if line[3:4] != b"-":
                self._rbuf = buf[start:]
                return int(line[:3]), "\n".join(lines)
            i = buf.find(b"\n", start)
        return None

    async def _read_reply(self) -> tuple[int, str]:
        while True:
            reply = self._next_reply()
            if reply is not None:
                return reply
            if len(self._rbuf) > MAX_REPLY:
                raise SmtpConnectionError("reply too long")
            assert self.reader is not None
            data = await self.reader.read(65536)
            if not data:
                raise SmtpConnectionError("relay closed the connection")
            self._rbuf += data

    async def _command(self, line: str) -> tuple[int, str]:
        assert self.writer is not None
        self.writer.write(line.encode("ascii") + b"\r\n")
        return await self._read_reply()

    async def _ehlo(self) -> None:
        name = self.cfg.helo or socket.gethostname()
        code, text = await self._command(f"EHLO {name}")
        if code != 250:
            code, text = await self._command(f"HELO {name}")
            if code != 250:
                raise SmtpReplyError(code, text, "ehlo")
            self.extensions = {}
            self._size_ext = False
            return
        ext: dict[str, str] = {}
        for line in text.split("\n")[1:]:
            word, _, rest = line.partition(" ")
            ext[word.upper()] = rest
        self.extensions = ext
        self._size_ext = "SIZE" in ext

    async def connect(self) -> None:
        cfg = self.cfg
        try:
            async with asyncio.timeout(cfg.timeout):
                ctx = _tls_context(cfg.verify_tls) if cfg.tls else None
                self._rbuf = b""
                self.reader, self.writer = await asyncio.open_connection(
                    cfg.host, cfg.port, ssl=ctx, server_hostname=cfg.host if ctx else None)
                code, text = await self._read_reply()
                if code != 220:
                    raise SmtpReplyError(code, text, "connect")
                await self._ehlo()
                if not cfg.tls and cfg.starttls != "never" and (
                        cfg.starttls == "always" or "STARTTLS" in self.extensions):
                    if "STARTTLS" not in self.extensions:
                        raise SmtpConfigError("relay does not offer STARTTLS "
                                              "(HERALD_SMTP_STARTTLS=always)")
                    code, text = await self._command("STARTTLS")
                    if code != 220:
                        raise SmtpReplyError(code, text, "starttls")
                    assert self.writer is not None
                    if self._rbuf:  # RFC 3207: nothing may follow the 220 before TLS
                        raise SmtpConnectionError("data after the STARTTLS reply")
                    await self.writer.start_tls(_tls_context(cfg.verify_tls),
                                                server_hostname=cfg.host)
                    await self._ehlo()
                if cfg.username:
                    await self._auth()
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            self.close()
            raise SmtpConnectionError(f"connect to {cfg.host}:{cfg.port}: "
                                      f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            self.close()
            raise
        self.sent = 0
        self.last_used = time.monotonic()

    async def _auth(self) -> None:
        methods = self.extensions.get("AUTH", "").upper().split()
        user, pw = self.cfg.username, self.cfg.password
        if "PLAIN" in methods:
            blob = base64.b64encode(f"\0{user}\0{pw}".encode()).decode("ascii")
            code, text = await self._command(f"AUTH PLAIN {blob}")
        elif "LOGIN" in methods:
            code, text = await self._command("AUTH LOGIN")
            if code == 334:
                code, text = await self._command(base64.b64encode(user.encode()).decode("ascii"))
            if code == 334:
                code, text = await self._command(base64.b64encode(pw.encode()).decode("ascii"))
        else:
            raise SmtpConfigError(f"relay offers no AUTH PLAIN/LOGIN (AUTH {methods})")
        if code != 235:
            raise SmtpReplyError(code, text, "auth")

    async def send(self, mail_from: str, rcpt: str, data: bytes,
                   gate: Callable[[], Awaitable[str | None]] | None = None) -> str:
        """One transaction; returns the final reply text. Raises SmtpReplyError (the
        session stays usable), SmtpConnectionError or NotCommitted (it is closed)."""
        assert self.writer is not None
        body = dot_stuff(data)
        size = f" SIZE={len(body)}" if "SIZE" in self.extensions else ""
        cmds = (f"MAIL FROM:<{mail_from}>{size}\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n").encode("ascii")
        try:
            async with asyncio.timeout(self.cfg.timeout):
                if "PIPELINING" in self.extensions:
                    self.writer.write(cmds)
                    r_mail = await self._read_reply()
                    r_rcpt = await self._read_reply()
                    r_data = await self._read_reply()
                else:
                    lines = cmds.split(b"\r\n")
                    r_mail = await self._command(lines[0].decode("ascii"))
                    r_rcpt = r_data = (503, "not sent")
                    if r_mail[0] == 250:
                        r_rcpt = await self._command(lines[1].decode("ascii"))
                        if r_rcpt[0] in (250, 251):
                            r_data = await self._command("DATA")
                if r_data[0] == 354 and (r_mail[0] != 250 or r_rcpt[0] not in (250, 251)):
                    # A relay that took DATA despite a refused envelope: send an empty body
                    # it will reject, so the session stays in step.
                    self.writer.write(b".\r\n")
                    await self._read_reply()
                if r_mail[0] != 250 or r_rcpt[0] not in (250, 251) or r_data[0] != 354:
                    await self._rset()
                    if r_mail[0] != 250:
                        raise SmtpReplyError(r_mail[0], r_mail[1], "mail")
                    if r_rcpt[0] not in (250, 251):
                        raise SmtpReplyError(r_rcpt[0], r_rcpt[1], "rcpt")
                    raise SmtpReplyError(r_data[0], r_data[1], "data")
                if gate is not None:
                    refused = await gate()
                    if refused is not None:
                        raise NotCommitted(refused)
                self.writer.write(body)
                code, text = await self._read_reply()
        except (OSError, TimeoutError) as exc:
            self.close()
            raise SmtpConnectionError(f"{type(exc).__name__}: {exc}") from exc
        except (SmtpConnectionError, NotCommitted):
            self.close()  # NotCommitted: mid-DATA, only a dropped session aborts it
            raise
        except asyncio.CancelledError:
            self.close()  # mid-transaction: never reuse the session
            raise
        self.sent += 1
        self.last_used = time.monotonic()
        if code != 250:
            raise SmtpReplyError(code, text, "data")
        return text

    def _envelope(self, job: QueuedMail, size: int) -> bytes:
        size_arg = f" SIZE={size}" if self._size_ext else ""
        return f"MAIL FROM:<{job.mail_from}>{size_arg}\r\nRCPT TO:<{job.rcpt}>\r\nDATA\r\n".encode("ascii")

    async def run_queue(self, queue: deque[QueuedMail], limiter: RateLimiter, cap: int,
                        commit: Commit | None = None, accepted: Accepted | None = None) -> None:
        """Send mail taken from `queue` until it is empty (or `cap` is reached), setting
        each job's result. With PIPELINING the next envelope rides in the same write as
        the previous body: RFC 2920 lets message content open a command group and DATA
        close it, so a message costs one write and one wait instead of two of each.
        A queued job whose envelope went out but got no reply before the connection
        failed is put back: the relay never had its body. With `commit`, each mail's content
        is written only once commit(mail) allowed it (see the module's write gate), and
        accepted(mail) hears of each 250 at once (the caller records it before the batch ends)."""
        if "PIPELINING" not in self.extensions:
            while queue and self.is_connected and not (cap and self.sent >= cap):
                job = queue.popleft()
                await limiter.acquire()
                job.started = time.perf_counter()
                try:
                    job.result = await self.send(
                        job.mail_from, job.rcpt, job.data,
                        None if commit is None else lambda j=job: commit(j))  # type: ignore[misc]
                    if accepted is not None:
                        accepted(job)
                except SmtpError as exc:
                    job.result = exc
                    if isinstance(exc, SmtpReplyError) and exc.code == 421:
                        self.close()
                job.took = time.perf_counter() - job.started
            return
        assert self.writer is not None
        write = self.writer.write
        read = self._read_reply
        parsed = self._next_reply  # replies already buffered need no await
        limited = bool(limiter.interval)
        loop = asyncio.get_running_loop()
        timeout = self.cfg.timeout
        rescheduled = 0.0
        job: QueuedMail | None = None
        primed: QueuedMail | None = None
        parts: tuple[bytes, bytes, int] = (b"", b"", 0)
        primed_parts = parts
        try:
            async with asyncio.timeout(None) as deadline:
                while True:
                    if primed is None:
                        if not queue or (cap and self.sent >= cap):
                            break
                        job = queue.popleft()
                        if limited:
                            await limiter.acquire()
                        job.started = time.perf_counter()
                        parts = job.body_parts()
                        write(self._envelope(job, parts[2]))
                    else:
                        job, primed, parts = primed, None, primed_parts
                    # The deadline moves at most once a second (a reschedule per message
                    # cost ~3 us): a reply may take between timeout and timeout + 1 s.
                    now = loop.time()
                    if now - rescheduled >= 1.0:
                        deadline.reschedule(now + timeout + 1.0)
                        rescheduled = now
                    r_mail = parsed() or await read()
                    r_rcpt = parsed() or await read()
                    r_data = parsed() or await read()
                    if r_mail[0] != 250 or r_rcpt[0] not in (250, 251) or r_data[0] != 354:
                        if r_data[0] == 354:  # DATA taken despite a refused envelope
                            write(b".\r\n")
                            await read()
                        await self._rset()
                        if r_mail[0] != 250:
                            job.result = SmtpReplyError(r_mail[0], r_mail[1], "mail")
                        elif r_rcpt[0] not in (250, 251):
                            job.result = SmtpReplyError(r_rcpt[0], r_rcpt[1], "rcpt")
                        else:
                            job.result = SmtpReplyError(r_data[0], r_data[1], "data")
                        job.took = time.perf_counter() - job.started
                        if 421 in (r_mail[0], r_rcpt[0], r_data[0]):
                            self.close()
                            break
                        continue
                    if commit is not None:
                        refused = await commit(job)
                        if refused is not None:
                            job.result = NotCommitted(refused)
                            job.took = time.perf_counter() - job.started
                            self.close()  # mid-DATA: only a dropped session aborts it
                            break
                    if queue and not (cap and self.sent + 1 >= cap):
                        primed = queue.popleft()
                        if limited:
                            await limiter.acquire()
                        primed.started = time.perf_counter()
                        primed_parts = primed.body_parts()
                        write(b"".join((parts[0], parts[1],
                                        self._envelope(primed, primed_parts[2]))))
                    else:
                        write(parts[0] + parts[1])
                    code, text = parsed() or await read()
                    self.sent += 1
                    job.took = time.perf_counter() - job.started
                    if code == 250:
                        job.result = text
                        if accepted is not None:
                            accepted(job)
                    else:
                        job.result = SmtpReplyError(code, text, "data")
                    if code == 421:
                        self.close()
                        break
        except (OSError, TimeoutError, SmtpConnectionError, asyncio.CancelledError) as exc:
            self.close()
            err = exc if isinstance(exc, SmtpConnectionError) else SmtpConnectionError(
                f"{type(exc).__name__}: {exc}")
            if job is not None and job.result is None:
                job.result = err
                job.took = time.perf_counter() - job.started
            if isinstance(exc, asyncio.CancelledError):
                if primed is not None:
                    primed.result = err
                raise
        finally:
            self.last_used = time.monotonic()
        if primed is not None and primed.result is None:
            queue.appendleft(primed)  # its envelope got no answer; another session sends it

    async def _rset(self) -> None:
        code, _ = await self._command("RSET")
        if code != 250:
            raise SmtpConnectionError(f"RSET refused ({code})")

    async def noop(self) -> None:
        try:
            async with asyncio.timeout(self.cfg.timeout):
                code, _ = await self._command("NOOP")
        except (OSError, TimeoutError, SmtpConnectionError):
            self.close()
            return
        if code != 250:
            self.close()

    async def quit(self) -> None:
        if self.is_connected:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self._command("QUIT")
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.close()
        self.reader = self.writer = None
        self._rbuf = b""


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
