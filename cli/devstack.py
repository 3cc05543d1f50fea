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
from dataclasses import dataclass, field
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
                 smsc_port: int | None = None, smsc: tuple[str, int] | None = None,
                 smtp: tuple[str, int] | None = None, smpp_routes: bool = False,
                 postback: bool = False) -> None:
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
        # An external SMSC / SMTP relay (host, port): no simulator / sink is started for it.
        # smpp_routes: the gateway's routes come from HERALD_SMPP_ROUTES as given.
        self.smsc = smsc or (("127.0.0.1", smsc_port) if smsc_port is not None else None)
        self.smtp = smtp
        self.smpp_routes = smpp_routes
        self.postback = postback  # also start the postback gateway
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
            if self.smsc is not None:
                smsc_host, smsc_port = self.smsc
            elif not self.smpp_routes:
                smsc_host = "127.0.0.1"
                smsc_port = self._module("smsc-simulator", "gateways.smpp.simulator").info["smpp_port"]
            if self.smtp is not None:
                smtp_host, smtp_port = self.smtp
            else:
                sink = self._module("smtp-sink", "gateways.email.sink", HERALD_SINK_DIR=str(self.sink_dir))
                smtp_host, smtp_port = "127.0.0.1", sink.info["smtp_port"]
            rec = self._module("recipients", "services.recipients")
            # Campaigns and stats call each other (ReconcileCampaign; stats asks campaigns
            # about campaigns it has no events for): stats' port is chosen first.
            stats_addr = f"127.0.0.1:{procs.free_port()}"
            camp = self._module("campaigns", "services.campaigns",
                                HERALD_RECIPIENTS_ADDR=f"127.0.0.1:{rec.info['grpc_port']}",
                                HERALD_STATS_ADDR=stats_addr)
            self._module("stats", "services.stats", HERALD_GRPC_ADDR=stats_addr,
                         HERALD_CAMPAIGNS_ADDR=f"127.0.0.1:{camp.info['grpc_port']}")
            smpp_env = ({} if self.smpp_routes else
                        {"HERALD_SMPP_HOST": smsc_host, "HERALD_SMPP_PORT": str(smsc_port)})
            self._module("smpp-gateway", "gateways.smpp", **smpp_env)
            self._module("email-gateway", "gateways.email", HERALD_SMTP_HOST=smtp_host,
                         # development key kept with the stack's other state
                         HERALD_TRACKING_DEV_KEY_FILE=str(self.workdir / "email-tracking-dev.key"),
                         HERALD_SMTP_PORT=str(smtp_port))
            if self.postback:
                self._module("postback-gateway", "gateways.postback")
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


@dataclass
class Peers:
    """What `make run` was given in its environment: an external SMSC / SMTP relay (used as
    is, no simulator / sink started) and a tokens file (real bearer tokens)."""
    smsc: tuple[str, int] | None = None
    smpp_routes: bool = False
    smtp: tuple[str, int] | None = None
    tokens_file: str = ""
    service_token: str = ""
    demo_token: str = ""
    demo_workspace: str = "demo"
    problems: list[str] = field(default_factory=list)


def _endpoint(env: dict[str, str], host_var: str, port_var: str, default_port: int) -> tuple[str, int] | None:
    if not (env.get(host_var) or env.get(port_var)):
        return None
    return env.get(host_var) or "127.0.0.1", int(env.get(port_var) or default_port)


def pick_tokens(path: str) -> tuple[str, str, str, list[str]]:
    """(demo token, its workspace, service token, problems) from a tokens file: the demo runs
    as the first admin (else operator and moderator) principal; the services call each other
    with the first service principal that has pii."""
    from shared import auth

    principals = auth.load_tokens(path)
    demo = next((t for t, p in principals.items() if p.roles & {"admin", "master"}), "") or next(
        (t for t, p in principals.items() if {"operator", "moderator"} <= p.roles), "")
    service = next((t for t, p in principals.items() if "service" in p.roles and p.pii), "")
    problems = []
    if not demo:
        problems.append(f"{path} has no admin (or operator and moderator) principal: no demo")
    if not service and not os.environ.get("HERALD_SERVICE_TOKEN"):
        problems.append(f"{path} has no service principal with pii: set HERALD_SERVICE_TOKEN")
    return demo, principals[demo].workspace if demo else "", service, problems


def peers_from_env(env: dict[str, str]) -> Peers:
    peers = Peers(smsc=_endpoint(env, "HERALD_SMPP_HOST", "HERALD_SMPP_PORT", 2775),
                  smpp_routes=bool(env.get("HERALD_SMPP_ROUTES")),
                  smtp=_endpoint(env, "HERALD_SMTP_HOST", "HERALD_SMTP_PORT", 25),
                  tokens_file=env.get("HERALD_TOKENS_FILE", ""))
    if peers.tokens_file:
        demo, ws, service, peers.problems = pick_tokens(peers.tokens_file)
        peers.demo_token, peers.demo_workspace = demo, ws
        peers.service_token = env.get("HERALD_SERVICE_TOKEN") or service
    return peers


def write_local_context(stack: Stack, token: str = "", workspace: str = "demo",
                        name: str = "local", path: Path | None = None) -> tuple[Path, str]:
    """Record the running stack as context `name` of the CLI's contexts file and make it
    current, so `herald` works from another shell with nothing exported. Returns the file
    and the context that was current before."""
    from cli import contexts

    cfg = contexts.ConfigFile.load(path)
    previous = cfg.current
    cfg.contexts[name] = {"campaigns": stack.addr("campaigns"), "recipients": stack.addr("recipients"),
                          "stats": stack.addr("stats"),
                          **({"token": token} if token else {"workspace": workspace})}
    cfg.current = name
    cfg.save()
    return cfg.path, previous


def peer_lines(peers: Peers) -> list[str]:
    """What `make run` says about the SMSC, the SMTP relay and authentication it uses."""
    if peers.smsc:
        smsc = f"SMSC: {peers.smsc[0]}:{peers.smsc[1]} (HERALD_SMPP_HOST/PORT; no simulator started)"
    elif peers.smpp_routes:
        smsc = "SMSC: the routes of HERALD_SMPP_ROUTES (no simulator started)"
    else:
        smsc = "SMSC: the project's simulator (set HERALD_SMPP_HOST/PORT for another)"
    smtp = (f"SMTP relay: {peers.smtp[0]}:{peers.smtp[1]} (HERALD_SMTP_HOST/PORT; no sink started)"
            if peers.smtp else "SMTP: the local sink, mail in var/run/mail (set HERALD_SMTP_HOST/PORT "
            "for a relay)")
    auth = (f"auth: bearer tokens of {peers.tokens_file}; the demo runs as a principal of "
            f"workspace {peers.demo_workspace!r}" if peers.tokens_file and peers.demo_token
            else f"auth: bearer tokens of {peers.tokens_file}" if peers.tokens_file
            else "auth: development mode (no tokens; workspace from --workspace)")
    return [smsc, smtp, auth]


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
    peers = peers_from_env(dict(os.environ))
    for problem in peers.problems:
        console.print(f"[yellow]{problem}[/]")
    if PIDFILE.exists():
        stop_recorded()  # a previous `make run` still up (or killed hard): stop it first
    # Every run starts from nothing: databases, JetStream store, mail sink.
    shutil.rmtree(workdir, ignore_errors=True)
    stack = Stack(workdir, tokens_file=Path(peers.tokens_file) if peers.tokens_file else None,
                  service_token=peers.service_token, smsc=peers.smsc, smtp=peers.smtp,
                  smpp_routes=peers.smpp_routes and peers.smsc is None)
    console.print("[bold]starting Herald[/] (logs in var/run/*.log)")
    for line in peer_lines(peers):
        console.print(f"  {line}", soft_wrap=True, highlight=False)
    t0 = time.monotonic()
    stack.start()
    PIDFILE.parent.mkdir(parents=True, exist_ok=True)
    PIDFILE.write_text(json.dumps({"devstack": os.getpid(), **stack.pids()}))
    console.print(f"all processes ready in {time.monotonic() - t0:.1f}s")
    try:
        ctx_path, previous = write_local_context(stack, peers.demo_token, peers.demo_workspace)
        ok, first_id = True, ""
        if peers.tokens_file and not peers.demo_token:
            console.print("[yellow]no demo: the tokens file has no token that may create and "
                          "approve campaigns[/]")
        else:
            md = ((("authorization", f"Bearer {peers.demo_token}"),) if peers.demo_token
                  else demo.WORKSPACE)
            result = asyncio.run(demo.run(stack, args.sms, args.email, console, md=md,
                                          external_smsc=peers.smsc is not None or peers.smpp_routes,
                                          external_smtp=peers.smtp is not None))
            ok, first_id = result.ok, result.sms.id
        table = Table(title="where Herald listens (all on 127.0.0.1)")
        for col in ("process", "listens", "metrics"):
            table.add_column(col)
        for row in stack.listing():
            table.add_row(*row)
        console.print(table)
        console.print(f"the CLI's context [bold]local[/] (this stack) is saved in {ctx_path} and is "
                      "now current: `herald` works from any shell with nothing exported"
                      + (f" (it was {previous!r}: herald config use-context {previous})"
                         if previous and previous != "local" else ""), soft_wrap=True)
        console.print("  .venv/bin/herald list" + (f"; .venv/bin/herald get {first_id}" if first_id else ""),
                      soft_wrap=True)
        if not ok:
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
