"""`herald`: the operators' CLI over gRPC.

Where the services are, the token, the workspace and TLS come from, in this order: flags,
environment (HERALD_CAMPAIGNS_ADDR, HERALD_TOKEN, HERALD_TLS_*, ...), the current context of
the contexts file (`herald config ...`; `make run` writes one), then defaults. Every command
takes --json.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import sys
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from cli import campaign_file, contexts
from cli.commands import campaigns, config_cmd, contacts
from cli.connect import UNREACHABLE, Clients, unreachable_hint
from cli.output import Output

GLOBAL_DEFAULTS: dict[str, Any] = {
    "context": None, "server": None, "campaigns_addr": None, "recipients_addr": None,
    "stats_addr": None, "token": None, "workspace": None, "tls": False, "tls_ca_file": None,
    "tls_cert_file": None, "tls_key_file": None, "tls_server_name": None, "json": False}


def version() -> str:
    try:
        return importlib.metadata.version("herald")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def common_options() -> argparse.ArgumentParser:
    """Options every command takes, before or after its name (`herald --json list` and
    `herald list --json` alike): defaults are filled in after parsing."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("connection and output")
    opt: dict[str, Any] = {"default": argparse.SUPPRESS}
    g.add_argument("--json", action="store_true", help="machine-readable JSON output", **opt)
    g.add_argument("--context", help="context of the contexts file to use (default: current)", **opt)
    g.add_argument("--server", help="one host:port for every service (a gateway)", **opt)
    g.add_argument("--campaigns-addr", help="CampaignService host:port", **opt)
    g.add_argument("--recipients-addr", help="RecipientService host:port", **opt)
    g.add_argument("--stats-addr", help="StatsService host:port", **opt)
    g.add_argument("--token", help="bearer token", **opt)
    g.add_argument("--workspace", help="workspace (development mode / service tokens)", **opt)
    g.add_argument("--tls", action="store_true", help="TLS with the system's roots", **opt)
    g.add_argument("--tls-ca-file", help="PEM CA of the servers' certificates", **opt)
    g.add_argument("--tls-cert-file", help="PEM client certificate (mutual TLS)", **opt)
    g.add_argument("--tls-key-file", help="PEM key of the client certificate", **opt)
    g.add_argument("--tls-server-name", help="name expected in the servers' certificates", **opt)
    return p


def parser() -> argparse.ArgumentParser:
    common = common_options()
    ap = argparse.ArgumentParser(prog="herald", parents=[common],
                                 description="Herald operators' CLI (campaigns, contacts, stats)")
    ap.add_argument("--version", action="version", version=f"herald {version()}")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    group = sub.add_parser("campaigns", help="campaign commands (also available at the top level)")
    campaigns.register(group.add_subparsers(dest="sub", required=True, metavar="COMMAND"), common)
    campaigns.register(sub, common)
    contacts.register(sub, common)
    config_cmd.register(sub, common)
    return ap


def describe(exc: grpc.aio.AioRpcError) -> str:
    """The status and, for INVALID_ARGUMENT, every field violation it carries."""
    lines = [f"{exc.code().name}: {exc.details()}"]
    for key, value in exc.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                lines += [f"  {v.field}: {v.description}" for v in bad.field_violations
                          if f"{v.field}: {v.description}" not in exc.details()]
    return "\n".join(lines)


async def run(args: argparse.Namespace, conf: contexts.Resolved, out: Output) -> int:
    cl = Clients(conf)
    try:
        return await args.func(args, cl, out)
    except grpc.aio.AioRpcError as exc:
        out.error(describe(exc))
        if exc.code() in UNREACHABLE:
            out.error(unreachable_hint(conf, cl.last))
        return 1
    finally:
        await cl.close()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for key, default in GLOBAL_DEFAULTS.items():
        if not hasattr(args, key):
            setattr(args, key, default)
    out = Output(args.json)
    try:
        if getattr(args, "offline", False):
            return args.func(args, out)
        conf = contexts.resolve(vars(args))
        return asyncio.run(run(args, conf, out))
    except (contexts.ConfigError, campaign_file.SpecError) as exc:
        out.error(str(exc))
        return 1
    except OSError as exc:  # a file named on the command line (campaign, CSV, TLS)
        out.error(f"{exc.filename or ''}: {exc.strerror or exc}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
