"""`make bench`: reproducible figures, printed as one table (never asserted in tests).

Each bench/bench_<name>.py module provides `add_arguments(parser)` (optional) and
`run(args) -> list[(figure, value, detail)]`. `python -m bench --only smpp` runs one.
Results are also written to bench/results/<name>-<time>.json.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent


def modules() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench")
    ap.add_argument("--only", action="append", choices=modules(), help="run only these benches")
    loaded = {name: importlib.import_module(f"bench.bench_{name}") for name in modules()}
    for mod in loaded.values():
        if hasattr(mod, "add_arguments"):
            mod.add_arguments(ap)
    args = ap.parse_args()
    console = Console()
    table = Table(title=f"Herald bench ({platform.machine()}, {platform.python_version()}, "
                        f"{len(__import__('os').sched_getaffinity(0))} cores)")
    for col in ("bench", "figure", "value", "detail"):
        table.add_column(col)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    for name, mod in loaded.items():
        if args.only and name not in args.only:
            continue
        console.print(f"running {name}…")
        rows = mod.run(args)
        (out / f"{name}-{int(time.time())}.json").write_text(json.dumps(rows, indent=1))
        for r in rows:
            table.add_row(name, *r)
    console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
