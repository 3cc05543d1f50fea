"""`herald config ...`: the contexts file (like kubectl config)."""

from __future__ import annotations

import argparse
from typing import Any

from cli import contexts
from cli.commands import add
from cli.output import Output, table


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    return {k: getattr(args, k, None) for k in ("context", "campaigns_addr", "recipients_addr",
                                                "stats_addr", "server", "token", "workspace", "tls",
                                                *(f"tls_{t}" for t in contexts.TLS_KEYS))}


def get_contexts(args: argparse.Namespace, out: Output) -> int:
    cfg = contexts.ConfigFile.load()
    if out.json:
        out.emit({"path": str(cfg.path), "current-context": cfg.current,
                  "contexts": {n: {**c, "token": "(set)" if c.get("token") else ""}
                               for n, c in cfg.contexts.items()}})
        return 0
    rows = []
    for name, ctx in sorted(cfg.contexts.items()):
        where = ctx.get("server") or ", ".join(f"{s} {ctx[s]}" for s in contexts.SERVICES if ctx.get(s))
        rows.append(["*" if name == cfg.current else "", name, where or "(defaults)",
                     ctx.get("workspace", ""), "yes" if ctx.get("token") else "",
                     "yes" if ctx.get("tls") else ""])
    out.print(f"contexts file {cfg.path}", soft_wrap=True, markup=False)
    out.print(table("contexts", ("current", "name", "addresses", "workspace", "token",
                                                "tls"), ids=("name",), rows=rows))
    return 0


def current_context(args: argparse.Namespace, out: Output) -> int:
    cfg = contexts.ConfigFile.load()
    if out.json:
        out.emit({"current-context": cfg.current})
    elif cfg.current:
        print(cfg.current)
    else:
        out.error(f"no current context in {cfg.path}")
        return 1
    return 0


def use_context(args: argparse.Namespace, out: Output) -> int:
    cfg = contexts.ConfigFile.load()
    if args.name not in cfg.contexts:
        out.error(f"no context {args.name!r} in {cfg.path} "
                  f"(have: {', '.join(sorted(cfg.contexts)) or 'none'})")
        return 1
    cfg.current = args.name
    cfg.save()
    out.print(f"switched to context {args.name!r}", markup=False)
    return 0


def set_context(args: argparse.Namespace, out: Output) -> int:
    cfg = contexts.ConfigFile.load()
    values = {"campaigns": args.campaigns, "recipients": args.recipients, "stats": args.stats,
              "server": args.server_addr, "token": args.ctx_token, "workspace": args.ctx_workspace}
    tls = {"ca_file": args.ca_file, "cert_file": args.cert_file, "key_file": args.key_file,
           "server_name": args.server_name}
    if args.enable_tls:
        tls["enabled"] = True  # type: ignore[assignment]
    ctx = cfg.set_context(args.name, values, tls)
    if args.use or not cfg.current:
        cfg.current = args.name
    cfg.save()
    if out.json:
        out.emit({"name": args.name, **ctx, "token": "(set)" if ctx.get("token") else ""})
    else:
        out.print(f"context {args.name!r} saved in {cfg.path}"
                  + (" (current)" if cfg.current == args.name else ""), markup=False, soft_wrap=True)
    return 0


def delete_context(args: argparse.Namespace, out: Output) -> int:
    cfg = contexts.ConfigFile.load()
    if cfg.contexts.pop(args.name, None) is None:
        out.error(f"no context {args.name!r} in {cfg.path}")
        return 1
    if cfg.current == args.name:
        cfg.current = ""
    cfg.save()
    out.print(f"deleted context {args.name!r}", markup=False)
    return 0


def view(args: argparse.Namespace, out: Output) -> int:
    """What the CLI would use now, and where each value comes from."""
    r = contexts.resolve(_flags(args))
    rows = [[s, r.addresses[s].value, r.addresses[s].origin] for s in contexts.SERVICES]
    rows.append(["token", "(set)" if r.token.value else "(none)", r.token.origin])
    rows.append(["workspace", r.workspace.value or "(none)", r.workspace.origin])
    rows += [[f"tls {k}", s.value, s.origin] for k, s in r.tls.items() if s.value]
    if out.json:
        out.emit({"path": str(r.path), "context": r.context, "tls": r.tls_on,
                  "settings": [dict(zip(("name", "value", "from"), x, strict=True)) for x in rows]})
        return 0
    out.print(f"contexts file {r.path}, context {r.context or '-'}, "
              f"{'TLS' if r.tls_on else 'plaintext'}", soft_wrap=True, markup=False)
    out.print(table("settings in effect", ("setting", "value", "from"), ids=("value",), rows=rows))
    return 0


def register(root: Any, common: argparse.ArgumentParser) -> None:
    cfg = root.add_parser("config", help="contexts: where the services are, token, workspace, TLS")
    sub = cfg.add_subparsers(dest="sub", required=True, metavar="COMMAND")
    add(sub, common, "get-contexts", get_contexts, "list the contexts").set_defaults(offline=True)
    add(sub, common, "current-context", current_context, "print the current context"
        ).set_defaults(offline=True)
    u = add(sub, common, "use-context", use_context, "make a context the current one")
    u.add_argument("name")
    u.set_defaults(offline=True)
    d = add(sub, common, "delete-context", delete_context, "delete a context")
    d.add_argument("name")
    d.set_defaults(offline=True)
    add(sub, common, "view", view, "the settings in effect and where each comes from"
        ).set_defaults(offline=True)
    # Not the common options: --server, --token and --workspace here are the context's values.
    help_ = "create or update a context (only the values given change; '' clears one)"
    s = sub.add_parser("set-context", help=help_, description=help_)
    s.set_defaults(func=set_context, offline=True)
    s.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                   help="machine-readable output")
    s.add_argument("name")
    s.add_argument("--campaigns", help="CampaignService host:port")
    s.add_argument("--recipients", help="RecipientService host:port")
    s.add_argument("--stats", help="StatsService host:port")
    s.add_argument("--server", dest="server_addr", help="one host:port for every service (gateway)")
    s.add_argument("--token", dest="ctx_token", help="bearer token")
    s.add_argument("--workspace", dest="ctx_workspace", help="workspace (development mode, service tokens)")
    s.add_argument("--ca-file", help="PEM CA of the servers' certificates (turns TLS on)")
    s.add_argument("--cert-file", help="PEM client certificate (mutual TLS)")
    s.add_argument("--key-file", help="PEM key of the client certificate")
    s.add_argument("--server-name", help="name expected in the servers' certificates")
    s.add_argument("--tls", dest="enable_tls", action="store_true", help="TLS with the system's roots")
    s.add_argument("--use", action="store_true", help="make it the current context")
