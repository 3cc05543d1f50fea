"""`make bench`: reproducible figures, printed as one table (never asserted in tests).

Each bench/bench_<name>.py module provides `add_arguments(parser)` (optional) and
`run(args)`, returning rows: bench.measure.row(...) dicts (name, value, unit, detail, load)
or (figure, value text, detail) tuples. `python -m bench --only pipeline --only kannel`
runs some. Every row of the run is written to bench/results.json (and a copy per run
under bench/results/), with the machine's load it was measured under; rows of benches
not run this time stay in bench/results.json.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import time
import traceback
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent


def modules() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def normalise(bench: str, r: Any) -> dict[str, Any]:
    """A row as a dict; a (figure, "1,234 msg/s", detail) tuple's value split into number and unit."""
    if isinstance(r, dict):
        return {"bench": bench, **r}
    name, text, detail = r
    head, _, unit = str(text).partition(" ")
    try:
        value: float | str = float(head.replace(",", ""))
    except ValueError:
        value, unit = text, ""
    return {"bench": bench, "name": name, "value": value, "unit": unit, "detail": detail, "load": ""}


def shown(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) >= 100:
        value = int(value)
    return f"{value:,}" if isinstance(value, int | float) else str(value)


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench")
    ap.add_argument("--only", action="append", choices=modules(), help="run only these benches")
    ap.add_argument("--results", default=str(HERE / "results.json"), help="where the rows are written")
    loaded = {name: importlib.import_module(f"bench.bench_{name}") for name in modules()}
    for mod in loaded.values():
        if hasattr(mod, "add_arguments"):
            mod.add_arguments(ap)
    args = ap.parse_args()
    # wide enough for the detail and load columns when the output is a file or a pipe
    console = Console(width=None if os.isatty(1) else 220)
    cores = len(os.sched_getaffinity(0))
    table = Table(title=f"Herald bench ({platform.machine()}, {platform.python_version()}, {cores} cores)")
    for col in ("bench", "figure", "value", "unit", "detail", "load while measuring"):
        table.add_column(col, overflow="fold")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    rows: list[dict[str, Any]] = []
    failed = False
    for name, mod in loaded.items():
        if args.only and name not in args.only:
            continue
        console.print(f"running {name}… (loadavg {os.getloadavg()[0]:.2f})")
        t0 = time.perf_counter()
        try:
            got = [normalise(name, r) for r in mod.run(args)]
        except Exception as exc:  # one bench failing must not lose the others' figures
            traceback.print_exc()
            got = [normalise(name, (f"FAILED: {type(exc).__name__}", "-", str(exc)[:500]))]
            failed = True
        at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        for r in got:
            r.setdefault("at", at)
        console.print(f"{name} took {time.perf_counter() - t0:.0f} s")
        (out / f"{name}-{int(time.time())}.json").write_text(json.dumps(got, indent=1))
        rows += got
        for r in got:
            table.add_row(name, r["name"], shown(r["value"]), r["unit"], r["detail"], r["load"])
    # Rows of the benches not run this time are kept: separate runs (e.g. one bench at a
    # time at full size) add up to one file. Each row carries when it was measured.
    path = Path(args.results)
    ran = {r["bench"] for r in rows}
    try:
        kept = [r for r in json.loads(path.read_text()).get("rows", []) if r.get("bench") not in ran]
    except (OSError, ValueError, AttributeError):
        kept = []
    path.write_text(json.dumps(
        {"machine": {"arch": platform.machine(), "python": platform.python_version(), "cores": cores},
         "rows": kept + rows}, indent=1))
    console.print(table)
    console.print(f"rows written to {args.results}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
