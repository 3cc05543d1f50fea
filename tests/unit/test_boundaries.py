"""A service never imports another service's modules: only `shared` and `herald.v1`."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNITS = [p for base in ("services", "gateways") for p in (ROOT / base).iterdir()
         if p.is_dir() and (p / "__init__.py").exists()]
PROJECT = {"services", "gateways", "cli", "bench", "tests"}
RUNTIME = ["gateways", "core"]  # the channel runtime every gateway is built on


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_units_found() -> None:
    assert {p.name for p in UNITS} >= {"campaigns", "recipients", "stats", "smpp", "email"}


def test_no_cross_service_imports() -> None:
    bad = []
    for unit in UNITS:
        own = f"{unit.parent.name}.{unit.name}"
        for py in unit.rglob("*.py"):
            for mod in imports(py):
                top = mod.split(".")[0]
                if top in PROJECT and not (mod == own or mod.startswith(own + ".")) \
                        and not (unit.parent.name == "gateways" and mod.split(".")[:2] == RUNTIME):
                    bad.append(f"{py.relative_to(ROOT)} imports {mod}")
    assert not bad, bad


def test_shared_imports_no_service() -> None:
    bad = [f"{py.name}: {m}" for py in (ROOT / "shared").rglob("*.py") for m in imports(py)
           if m.split(".")[0] in PROJECT]
    assert not bad, bad
