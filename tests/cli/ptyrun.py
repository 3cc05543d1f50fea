"""Run the real `herald` CLI in a pseudo-terminal (what an operator's terminal gives it),
80 columns wide, and hand back what it put on the screen."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass
from pathlib import Path

HERALD = Path(sys.executable).parent / "herald"
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]")


@dataclass
class Screen:
    rc: int
    raw: str  # with the terminal's control sequences

    @property
    def text(self) -> str:
        """What a person reads: control sequences removed, carriage returns as new lines."""
        return ANSI.sub("", self.raw).replace("\r\n", "\n").replace("\r", "\n")


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment without any HERALD_* variable (the CLI must find its way alone)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env.update({"COLUMNS": "80", "LINES": "40", "TERM": "xterm-256color"})
    env.pop("NO_COLOR", None)
    env.update(extra or {})
    return env


def run(args: list[str], env: dict[str, str], timeout: float = 60.0, cwd: Path | None = None) -> Screen:
    master, slave = pty.openpty()
    os.set_blocking(master, False)
    # The terminal's size, as a real terminal reports it (rich asks the tty).
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 80, 0, 0))
    proc = subprocess.Popen([str(HERALD), *args], stdin=slave, stdout=slave, stderr=slave,
                            env=env, cwd=cwd, close_fds=True, start_new_session=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                proc.kill()
                raise TimeoutError(f"herald {' '.join(args)} still running after {timeout}s:\n"
                                   + b"".join(chunks).decode(errors="replace")[-3000:])
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except BlockingIOError:
                continue
            except OSError:  # EIO: every holder of the terminal's other end is gone
                data = b""
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    return Screen(proc.wait(), b"".join(chunks).decode(errors="replace"))
