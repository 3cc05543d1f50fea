"""The committed generated code must be what `make protos` produces from the .proto files."""

import filecmp
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_not_stale(tmp_path: Path) -> None:
    protos = sorted(str(p.relative_to(ROOT / "protos")) for p in (ROOT / "protos/herald/v1").glob("*.proto"))
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-Iprotos", f"--python_out={tmp_path}",
                    f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}",
                    *[f"protos/{p}" for p in protos]], cwd=ROOT, check=True)
    fresh = sorted(p.name for p in (tmp_path / "herald/v1").iterdir())
    committed = sorted(p.name for p in (ROOT / "protos/herald/v1").iterdir()
                       if p.suffix in (".py", ".pyi") and p.name != "__init__.py")
    assert fresh == committed, "run `make protos` and commit the result"
    stale = [n for n in fresh if not filecmp.cmp(tmp_path / "herald/v1" / n,
                                                 ROOT / "protos/herald/v1" / n, shallow=False)]
    assert not stale, f"stale generated code {stale}: run `make protos` and commit"
