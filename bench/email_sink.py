"""The fast SMTP sink of the email bench: a minimal PIPELINING responder in its own
process, so that the gateway, not the sink, is the limit of a send run."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


class FastSmtp(asyncio.Protocol):
    """Just enough ESMTP with PIPELINING to accept mail as fast as a socket allows."""

    count = 0

    def connection_made(self, transport: Any) -> None:
        self.t = transport
        self.buf = b""
        self.in_data = False
        transport.write(b"220 bench-sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buf += data
        out = []
        while self.buf:
            if self.in_data:
                probe = b"\r\n" + self.buf
                i = probe.find(b"\r\n.\r\n")
                if i < 0:
                    break
                self.buf = probe[i + 5:]
                self.in_data = False
                FastSmtp.count += 1
                out.append(b"250 2.0.0 OK queued\r\n")
                continue
            i = self.buf.find(b"\r\n")
            if i < 0:
                break
            line, self.buf = self.buf[:i], self.buf[i + 2:]
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                out.append(b"250-bench-sink\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                self.in_data = True
                out.append(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                out.append(b"221 bye\r\n")
                self.t.write(b"".join(out))
                self.t.close()
                return
            else:
                out.append(b"250 2.1.0 OK\r\n")
        if out:
            self.t.write(b"".join(out))


def serve_fast_sink(ready: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(FastSmtp, "127.0.0.1", 0)
        Path(ready).write_text(str(server.sockets[0].getsockname()[1]))  # noqa: ASYNC240 (once, at start)
        await asyncio.Event().wait()

    try:
        import uvloop
        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


def start_fast_sink(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    ready = work / "fast-sink.port"
    p = subprocess.Popen([sys.executable, "-c",
                          f"from bench.email_sink import serve_fast_sink; serve_fast_sink({str(ready)!r})"],
                         cwd=ROOT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if ready.exists() and ready.read_text():
            return p, int(ready.read_text())
        time.sleep(0.05)
    p.kill()
    raise RuntimeError("fast sink did not start")
