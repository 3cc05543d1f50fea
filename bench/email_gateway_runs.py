"""Email gateway processes for the bench: started from this checkout or from another one
(--email-ab-tree), and one send run (jobs pre-loaded, gateway started, time until drained)
with the gateway's CPU and the machine's load while it ran."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

from bench import email_profile, measure
from bench.email_jobs import drained, preload, reset_consumer
from cli import procs

TRACKING_KEY = "bench-tracking-key"


class SendRun(NamedTuple):
    seconds: float  # from the gateway's ready line until the jobs are drained
    cpu: float  # the gateway's CPU seconds in that time
    load: str  # the machine's load meanwhile (load_text), and the gateway's kernel time


def gateway_env(nats_url: str, redis_url: str, smtp_port: int) -> dict[str, str]:
    return {"HERALD_NATS_URL": nats_url, "HERALD_REDIS_URL": redis_url,
            "HERALD_SMTP_HOST": "127.0.0.1", "HERALD_SMTP_PORT": str(smtp_port),
            "HERALD_TRACKING_KEYS": TRACKING_KEY, "HERALD_TRACKING_RATE": "0",
            "HERALD_LOG_LEVEL": "WARNING"}


def start_gateway(name: str, work: Path, env: dict[str, str], tree: str | None = None) -> procs.Proc:
    """The gateway from this checkout, or from another one (--email-ab-tree: e.g. a git
    worktree of the commit to compare with, gateway and shared both from there)."""
    if tree is None:
        return procs.start_module(name, "gateways.email", work, env)
    return start_in_tree(name, "gateways.email", work, env, tree)


def start_in_tree(name: str, module: str, work: Path, env: dict[str, str], tree: str) -> procs.Proc:
    """`python -m module` of another checkout (its packages first on the path), waited for
    until its ready line (the SMPP bench's --smpp-ab-tree uses it too)."""
    ready = work / f"{name}.ready"
    ready.unlink(missing_ok=True)
    log_path = work / f"{name}.log"
    code = (f"import sys, runpy; sys.path.insert(0, {tree!r}); "
            f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)")
    with open(log_path, "wb") as fh:
        popen = subprocess.Popen([sys.executable, "-c", code], stdout=fh, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, cwd=tree, start_new_session=True,
                                 env={**os.environ, **env, "HERALD_READY_FILE": str(ready)})
    return procs.wait_ready(procs.Proc(name, popen, log_path), ready, 60.0)


def cpu_seconds(pid: int, system: bool = False) -> float:
    """CPU seconds (user + system; system only: the kernel's share) of a process so far:
    what the gateway itself spent, independent of what else runs on the machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    if system:
        return int(fields[12]) / os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_text(m0: tuple[float, float], m1: tuple[float, float], wall: float, gw_cpu: float) -> str:
    """Machine load while measuring: everything else on the machine competes for the
    same cores, so a figure is only comparable with the load it was taken under."""
    busy = m1[0] - m0[0]
    cores = len(os.sched_getaffinity(0))
    return (f"machine {busy / wall:.2f} of {cores} cores busy (gateway {gw_cpu / wall:.2f}, "
            f"rest {(busy - gw_cpu) / wall:.2f}); loadavg {os.getloadavg()[0]:.2f}")


def sending_run(work: Path, nats_url: str, redis_url: str, n: int, smtp_port: int,
                pool: int, extra: dict[str, str], label: str,
                profile: Path | None = None, tree: str | None = None) -> SendRun:
    # a fresh durable per run: delete the consumer so the previous run's state is gone
    asyncio.run(reset_consumer(nats_url))
    asyncio.run(preload(nats_url, n, f"c-bench-{label}"))
    env = {**gateway_env(nats_url, redis_url, smtp_port), "HERALD_SMTP_POOL_SIZE": str(pool), **extra}
    gw = start_gateway(f"email-gateway-{label}", work, env, tree)
    spy = email_profile.start(gw.popen.pid, profile)
    try:
        cpu0, sys0, m0 = cpu_seconds(gw.popen.pid), cpu_seconds(gw.popen.pid, system=True), measure.machine()
        took = asyncio.run(drained(nats_url, 600))
        cpu, m1 = cpu_seconds(gw.popen.pid) - cpu0, measure.machine()
        kernel = cpu_seconds(gw.popen.pid, system=True) - sys0
    finally:
        email_profile.stop(spy)
        gw.stop()
    load = (load_text(m0, m1, took, cpu)
            + f"; gateway kernel (system) time {kernel / n * 1e6:,.0f} µs/email")
    return SendRun(took, cpu, load)
