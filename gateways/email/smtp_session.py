"""One SMTP client session with the relay: PIPELINING, replies read in bulk, STARTTLS /
implicit TLS, AUTH, and the write gate before each mail's content (see smtp_pool.py)."""

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
    _tls_context,
    dot_stuff,
)

log = logging.getLogger("herald.email.smtp")

IDLE_PROBE_AFTER = 20.0
MAX_REPLY = 1 << 20  # bytes of an unfinished reply before the session is given up


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
