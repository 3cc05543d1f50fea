"""`make run`: the whole Herald stack on loopback with embedded defaults, then a demo.

Starts a private nats-server (JetStream) and redis-server, the SMSC simulator, an SMTP
sink, the three services and both gateways (SQLite databases under var/run), runs a
demo SMS campaign (1,000 recipients) and an email campaign (200 contacts in a category),
prints their stats and every listening address, and keeps running until Ctrl-C or
`make stop`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from cli import procs

ROOT = Path(__file__).resolve().parents[1]
PIDFILE = ROOT / "var/run/pids.json"


# ready-line field -> the setting that binds it: a restarted process keeps its ports.
_PORT_VARS = {"grpc_port": "HERALD_GRPC_ADDR", "metrics_port": "HERALD_METRICS_ADDR",
              "smpp_port": "HERALD_SMPP_SIM_ADDR", "smtp_port": "HERALD_SINK_ADDR",
              "tracking_port": "HERALD_TRACKING_ADDR", "bounce_port": "HERALD_BOUNCE_ADDR"}


class Stack:
    """Every process of a local Herald, each on a free loopback port."""

    def __init__(self, workdir: Path, db_url: str | None = None, extra_env: dict | None = None,
                 module_env: dict[str, dict[str, str]] | None = None,
                 tokens_file: Path | None = None, service_token: str = "",
                 smsc_port: int | None = None) -> None:
        self.workdir = workdir
        self.db_url = db_url or f"sqlite+aiosqlite:///{workdir}/herald-{{service}}.db"
        self.extra_env = extra_env or {}
        if tokens_file is not None:
            # Real bearer tokens instead of development auth; the services call each other
            # with service_token (a token of role "service").
            self.extra_env = {"HERALD_TOKENS_FILE": str(tokens_file),
                              "HERALD_SERVICE_TOKEN": service_token, **self.extra_env}
        # An SMSC already listening (e.g. a test's in-process simulator it can inject MO
        # through and read submits from) instead of the simulator process.
        self.smsc_port = smsc_port
        self.module_env = module_env or {}  # per process name, e.g. {"smsc-simulator": {...}}
        self.procs: dict[str, procs.Proc] = {}
        self.modules: dict[str, tuple[str, dict[str, str]]] = {}  # name -> (module, its own env)
        self.sink_dir = workdir / "mail"

    def env(self) -> dict[str, str]:
        return {
            "HERALD_NATS_URL": self.procs["nats"].info["url"],
            "HERALD_REDIS_URL": self.procs["redis"].info["url"],
            "HERALD_DB_URL": self.db_url,
            "HERALD_GRPC_ADDR": "127.0.0.1:0",
            "HERALD_METRICS_ADDR": "127.0.0.1:0",
            "HERALD_LOG_FORMAT": "json",
            # A local stack is a development stack: built-in signing keys are allowed.
            "HERALD_DEV_MODE": "1",
            **self.extra_env,
        }

    def _module(self, name: str, module: str, **env: str) -> procs.Proc:
        self.modules[name] = (module, env)
        proc = procs.start_module(name, module, self.workdir,
                                  {**self.env(), **env, **self.module_env.get(name, {})})
        self.procs[name] = proc
        return proc

    # --- faults (tests/chaos): kill, stop and start one process, on the same ports ------------
    def kill(self, name: str) -> None:
        """kill -9 one process: no shutdown handler runs."""
        self.procs[name].kill()

    def stop_one(self, name: str) -> None:
        """SIGTERM one process and wait for it (its ports and data stay reserved for start_one)."""
        self.procs[name].stop()

    def start_one(self, name: str) -> procs.Proc:
        """Start a stopped or killed process again on the ports it had, with the same data
        (JetStream store, Redis append-only file, databases, mail directory), so every other
        process finds it where it was."""
        old = self.procs[name]
        if old.alive():
            raise RuntimeError(f"{name} is still running (pid {old.popen.pid})")
        if name == "nats":
            self.procs[name] = procs.start_nats(self.workdir / "nats", port=old.info["port"])
        elif name == "redis":
            self.procs[name] = procs.start_redis(self.workdir / "redis", port=old.info["port"])
        else:
            module, env = self.modules[name]
            pinned = {var: f"127.0.0.1:{old.info[key]}" for key, var in _PORT_VARS.items()
                      if old.info.get(key)}
            proc = procs.start_module(name, module, self.workdir,
                                      {**self.env(), **env, **self.module_env.get(name, {}), **pinned})
            self.procs[name] = proc
        return self.procs[name]

    def restart(self, name: str, hard: bool = False) -> procs.Proc:
        """Stop (SIGKILL when hard, else SIGTERM) and start again on the same ports."""
        if hard:
            self.kill(name)
        else:
            self.stop_one(name)
        return self.start_one(name)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.procs["nats"] = procs.start_nats(self.workdir / "nats")
            self.procs["redis"] = procs.start_redis(self.workdir / "redis")
            if self.smsc_port is None:
                smsc_port = self._module("smsc-simulator", "gateways.smpp.simulator").info["smpp_port"]
            else:
                smsc_port = self.smsc_port
            sink = self._module("smtp-sink", "gateways.email.sink", HERALD_SINK_DIR=str(self.sink_dir))
            rec = self._module("recipients", "services.recipients")
            # Campaigns and stats call each other (ReconcileCampaign; stats asks campaigns
            # about campaigns it has no events for): stats' port is chosen first.
            stats_addr = f"127.0.0.1:{procs.free_port()}"
            camp = self._module("campaigns", "services.campaigns",
                                HERALD_RECIPIENTS_ADDR=f"127.0.0.1:{rec.info['grpc_port']}",
                                HERALD_STATS_ADDR=stats_addr)
            self._module("stats", "services.stats", HERALD_GRPC_ADDR=stats_addr,
                         HERALD_CAMPAIGNS_ADDR=f"127.0.0.1:{camp.info['grpc_port']}")
            self._module("smpp-gateway", "gateways.smpp", HERALD_SMPP_HOST="127.0.0.1",
                         HERALD_SMPP_PORT=str(smsc_port))
            self._module("email-gateway", "gateways.email", HERALD_SMTP_HOST="127.0.0.1",
                         # development key kept with the stack's other state
                         HERALD_TRACKING_DEV_KEY_FILE=str(self.workdir / "email-tracking-dev.key"),
                         HERALD_SMTP_PORT=str(sink.info["smtp_port"]))
        except Exception:
            self.stop()
            raise

    def addr(self, name: str) -> str:
        return f"127.0.0.1:{self.procs[name].info['grpc_port']}"

    def stop(self, timeout: float = 10.0) -> None:
        # Gateways first (they drain), then services, then the servers they need; a process
        # not gone `timeout` seconds after SIGTERM is killed.
        for name in reversed(list(self.procs)):
            self.procs[name].stop(timeout)

    def listing(self) -> list[tuple[str, str, str]]:
        rows = []
        for name, p in self.procs.items():
            info = p.info
            if name in ("nats", "redis"):
                rows.append((name, info["url"], ""))
                continue
            parts = []
            if info.get("grpc_port"):
                parts.append(f"gRPC :{info['grpc_port']}")
            for key in ("smpp_port", "smtp_port", "tracking_port", "bounce_port"):
                if info.get(key):
                    parts.append(f"{key.removesuffix('_port')} :{info[key]}")
            metrics = f":{info['metrics_port']}/metrics" if info.get("metrics_port") else ""
            rows.append((name, ", ".join(parts), metrics))
        return rows

    def pids(self) -> dict[str, int]:
        return {n: p.popen.pid for n, p in self.procs.items()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def stop_recorded() -> int:
    """`make stop`: ask the running devstack to stop its stack; if it is gone, stop the
    processes it left behind."""
    if not PIDFILE.exists():
        print("nothing recorded as running")
        return 0
    pids = json.loads(PIDFILE.read_text())
    owner = pids.pop("devstack", 0)
    if owner and _alive(owner):
        os.kill(owner, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _alive(owner) and time.monotonic() < deadline:
            time.sleep(0.2)
        print(f"stopped the stack of make run ({owner})")
    for name, pid in reversed(list(pids.items())):
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
            print(f"stopped {name} ({pid})")
    PIDFILE.unlink(missing_ok=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(prog="herald-devstack")
    ap.add_argument("--stop", action="store_true", help="stop a stack started by make run")
    ap.add_argument("--exit-after-demo", action="store_true", help="stop once the demo printed")
    ap.add_argument("--sms", type=int, default=1000, help="SMS demo recipients (max 1000)")
    ap.add_argument("--email", type=int, default=200, help="email demo contacts")
    args = ap.parse_args()
    if args.stop:
        return stop_recorded()

    from rich.console import Console
    from rich.table import Table

    from cli import demo

    console = Console()
    workdir = ROOT / "var/run"
    if PIDFILE.exists():
        stop_recorded()  # a previous `make run` still up (or killed hard): stop it first
    # Every run starts from nothing: databases, JetStream store, mail sink.
    shutil.rmtree(workdir, ignore_errors=True)
    stack = Stack(workdir)
    console.print("[bold]starting Herald[/] (logs in var/run/*.log)")
    t0 = time.monotonic()
    stack.start()
    PIDFILE.parent.mkdir(parents=True, exist_ok=True)
    PIDFILE.write_text(json.dumps({"devstack": os.getpid(), **stack.pids()}))
    console.print(f"all processes ready in {time.monotonic() - t0:.1f}s")
    try:
        result = asyncio.run(demo.run(stack, args.sms, args.email, console))
        table = Table(title="where Herald listens (all on 127.0.0.1)")
        for col in ("process", "listens", "metrics"):
            table.add_column(col)
        for row in stack.listing():
            table.add_row(*row)
        console.print(table)
        console.print("try the CLI from another shell:")
        console.print(f"  export HERALD_CAMPAIGNS_ADDR={stack.addr('campaigns')} "
                      f"HERALD_STATS_ADDR={stack.addr('stats')}", soft_wrap=True)
        console.print(f"  .venv/bin/herald --workspace demo list; "
                      f".venv/bin/herald --workspace demo stats {result.sms.id}", soft_wrap=True)
        if not result.ok:
            console.print("[red]demo did not reach the expected figures[/]")
            return 1
        if args.exit_after_demo:
            return 0
        console.print("[bold green]running[/]: Ctrl-C (or `make stop`) stops everything")
        stop = {"flag": False}

        def on_signal(*_: object) -> None:
            stop["flag"] = True

        signal.signal(signal.SIGTERM, on_signal)
        while not stop["flag"] and all(p.alive() for p in stack.procs.values()):
            time.sleep(0.5)
        dead = [n for n, p in stack.procs.items() if not p.alive()]
        if dead:
            console.print(f"[red]exited unexpectedly: {', '.join(dead)}[/] (see var/run/<name>.log)")
            return 1
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        console.print("stopping…")
        stack.stop()
        PIDFILE.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
