"""Start and stop the real server processes Herald runs on: nats-server (JetStream),
redis-server, Herald's own services. Used by `make run` (cli.devstack) and the tests.

Every server binds a free loopback port and is waited for by its own "ready" log line.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_binary(name: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}", f"/usr/local/bin/{name}") if os.path.exists(p)),
        None,
    )
    if not path:
        raise RuntimeError(f"{name} not found: install it (make deps does, via apt)")
    return path


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log_path: Path
    info: dict = field(default_factory=dict)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)

    def kill(self) -> None:
        """SIGKILL (kill -9): no handler runs, nothing is flushed or drained."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def _spawn(name: str, argv: list[str], workdir: Path, env: dict | None = None) -> Proc:
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    # Appended, not truncated: a process restarted after a fault keeps its earlier log.
    fh = open(log_path, "ab")  # noqa: SIM115 - the child owns it
    popen = subprocess.Popen(
        argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})}, start_new_session=True,
    )
    fh.close()
    return Proc(name, popen, log_path)


def _log_size(workdir: Path, name: str) -> int:
    try:
        return (workdir / f"{name}.log").stat().st_size
    except OSError:
        return 0


def _wait_log(proc: Proc, needle: str, timeout: float, offset: int = 0) -> None:
    """Wait for `needle` in the log written after `offset` (an earlier run's lines do not count)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(proc.log_path, "rb") as fh:
            fh.seek(offset)
            fresh = fh.read().decode(errors="replace")
        if needle in fresh:
            return
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited early:\n{proc.log_tail()}")
        time.sleep(0.05)
    proc.stop()
    raise RuntimeError(f"{proc.name} not ready after {timeout}s:\n{proc.log_tail()}")


def start_nats(workdir: Path, port: int | None = None) -> Proc:
    port = port or free_port()
    store = workdir / "nats-store"  # same workdir: a restart keeps the JetStream store
    offset = _log_size(workdir, "nats")
    proc = _spawn("nats", [find_binary("nats-server"), "-a", "127.0.0.1", "-p", str(port),
                           "-js", "-sd", str(store)], workdir)
    _wait_log(proc, "Server is ready", 20, offset)
    proc.info = {"url": f"nats://127.0.0.1:{port}", "port": port}
    return proc


def start_redis(workdir: Path, port: int | None = None) -> Proc:
    port = port or free_port()
    # Durable as production must be (docs/runbook.md "What must be durable"): the append-only
    # file, fsynced every second, so a Redis restart keeps the gateways' maps and markers.
    offset = _log_size(workdir, "redis")
    proc = _spawn("redis", [find_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
                            "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
                            "--dir", str(workdir)], workdir)
    _wait_log(proc, "Ready to accept connections", 20, offset)
    proc.info = {"url": f"redis://127.0.0.1:{port}/0", "port": port}
    return proc


def start_module(name: str, module: str, workdir: Path, env: dict[str, str],
                 args: list[str] | None = None, timeout: float = 60.0) -> Proc:
    """Run `python -m module` and wait until it appends its ready line to a ready file."""
    ready = workdir / f"{name}.ready"
    ready.unlink(missing_ok=True)
    proc = _spawn(name, [sys.executable, "-m", module, *(args or [])], workdir,
                  {**env, "HERALD_READY_FILE": str(ready)})
    return wait_ready(proc, ready, timeout)


def wait_ready(proc: Proc, ready: Path, timeout: float) -> Proc:
    """Wait until `proc` appends its ready line (JSON) to `ready`; its fields become proc.info."""
    name = proc.name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready.exists() and ready.read_text().strip():
            proc.info = json.loads(ready.read_text().strip().splitlines()[-1])
            return proc
        if not proc.alive():
            raise RuntimeError(f"{name} exited early:\n{proc.log_tail()}")
        time.sleep(0.05)
    proc.stop()
    raise RuntimeError(f"{name} not ready after {timeout}s:\n{proc.log_tail()}")
