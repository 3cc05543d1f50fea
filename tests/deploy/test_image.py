"""The container image, without a container engine: the Dockerfile passes hadolint, its
runtime stage runs unprivileged with `python -m <module>`, and its application layer —
built here exactly as the Dockerfile's build stage builds it (the files it copies, the
same pip steps with the constraints file, no dev extras) — starts every Herald process
from outside the repository, against private nats-server/redis-server."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cli import procs

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
CONSTRAINTS = "requirements/constraints.txt"
# The module's venv is three pip steps of up to 300 s each (minutes on a busy machine, with the
# other test worker running); the suite-wide 300 s would end it half way.
pytestmark = pytest.mark.timeout(900)
# The build stage's two pip steps (run with the venv's pip): the test runs the same ones.
DEPS_STEP = f"pip install --only-binary=:all: -r {CONSTRAINTS}"
APP_STEP = f"pip install -c {CONSTRAINTS} ."
STRIP_STEP = "pip uninstall -y pip setuptools"
# Development tools that must not reach the image.
DEV_ONLY = ("grpc_tools", "pytest", "dkim", "hypothesis", "ruff")
# What the image runs: module -> ready-file name (python -m <module>).
PROCESSES = {"services.campaigns": "campaigns", "services.recipients": "recipients",
             "services.stats": "stats", "gateways.smpp": "smpp-gateway",
             "gateways.email": "email-gateway"}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, args = full.partition(" ")
        out.append((word.upper(), args.strip()))
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions(text):
        if ins[0] == "FROM":
            result.append([])
        result[-1].append(ins)
    return result


def test_dockerfile_passes_hadolint() -> None:
    tool = ROOT / ".venv-tools/bin/hadolint"
    hadolint = str(tool) if tool.exists() else shutil.which("hadolint")
    assert hadolint, "hadolint not found: `make tools` installs it in .venv-tools"
    res = subprocess.run([hadolint, "--no-color", "--failure-threshold", "style", "Dockerfile"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and not res.stdout.strip(), res.stdout + res.stderr


def test_runtime_stage_is_unprivileged_and_runs_python_modules() -> None:
    build, runtime = stages(DOCKERFILE.read_text())
    bases = {args.split()[0] for stage in (build, runtime) for word, args in stage if word == "FROM"}
    assert bases == {"python:3.11-slim-bookworm"}, bases
    final = dict(runtime)  # the last of each instruction wins, as in Docker
    user = final.get("USER", "")
    assert re.fullmatch(r"[1-9]\d*(:\d+)?", user), f"USER must be a numeric non-root uid: {user!r}"
    assert json.loads(final["ENTRYPOINT"]) == ["python", "-m"]
    assert json.loads(final["CMD"])[0] in PROCESSES
    assert not any(w == "RUN" and re.search(r"apt-get|gcc|build-essential", a) for w, a in runtime)
    env = final.get("ENV", "")
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env


def _dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    """(exclude?, pattern) of .dockerignore, in order; the last pattern matching a path or
    one of its parent folders decides, as Docker decides what enters the build context."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pat = line.lstrip("!").strip("/")
        rx = "".join(
            "(.*/)?" if tok == "**/" else ".*" if tok == "**" else "[^/]*" if tok == "*"
            else "[^/]" if tok == "?" else re.escape(tok)
            for tok in re.findall(r"\*\*/|\*\*|\*|\?|[^*?]+", pat))
        rules.append((not negated, re.compile(rx)))
    return rules


def _in_context(rel: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = rel.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for exclude, rx in rules:
        if any(rx.fullmatch(c) for c in candidates):
            excluded = exclude
    return not excluded


def _copy_like_docker(stage: list[tuple[str, str]], src: Path) -> None:
    """The build stage's COPY instructions, from the build context .dockerignore leaves,
    relative to the stage's WORKDIR (which is `src`)."""
    rules = _dockerignore()
    for word, args in stage:
        if word != "COPY":
            continue
        parts = shlex.split(args)
        assert not any(p.startswith("--") for p in parts), f"unexpected COPY flags: {args}"
        *sources, dest = parts
        for s in sources:
            origin = ROOT / s
            files = sorted(f for f in origin.rglob("*") if f.is_file()) if origin.is_dir() else [origin]
            files = [f for f in files if _in_context(f.relative_to(ROOT).as_posix(), rules)]
            assert files, f"COPY {s}: nothing of it is in the build context (.dockerignore)"
            for f in files:
                if origin.is_dir():
                    target = src / dest / f.relative_to(origin)
                elif dest.endswith("/") or dest in (".", "./"):
                    target = src / dest / origin.name
                else:
                    target = src / dest
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, target)


def _clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without Herald settings and without the repository on the path."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HERALD_") and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return {**env, **extra}


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image's /opt/herald, built as the Dockerfile builds it (pip's cache allowed)."""
    text = DOCKERFILE.read_text()
    for step in (DEPS_STEP, APP_STEP, STRIP_STEP):
        assert step in text, f"the Dockerfile no longer runs `{step}`: keep this test in step"
    base = tmp_path_factory.mktemp("image")
    src, venv = base / "src", base / "venv"
    src.mkdir()
    _copy_like_docker(stages(text)[0], src)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=60)
    # Without compiling every installed module up front, as the image does: the processes
    # below compile only what they import.
    env = _clean_env(PIP_NO_COMPILE="1")
    for step in (DEPS_STEP, APP_STEP, STRIP_STEP):
        argv = [str(venv / "bin/python"), "-m", *shlex.split(step), "-q"]
        res = subprocess.run(argv, cwd=src, env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, f"{step} failed:\n{res.stdout}\n{res.stderr}"
    return venv


def _venv_python(venv: Path, code: str, cwd: Path) -> str:
    res = subprocess.run([str(venv / "bin/python"), "-c", code], cwd=cwd, env=_clean_env(),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return res.stdout


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / CONSTRAINTS).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_application_layer_is_the_pinned_runtime_closure(image_venv: Path, tmp_path: Path) -> None:
    """Exactly the pinned dependencies plus Herald (no pip, no build or dev tools), and
    Herald's code, protos included, imported from the venv, not from a source tree."""
    code = ("import importlib.metadata as m, importlib.util as u, json, re\n"
            "import services.campaigns, herald.v1.campaigns_pb2 as pb\n"
            "print(json.dumps({'dists': {re.sub(r'[-_.]+', '-', d.metadata['Name']).lower(): d.version"
            " for d in m.distributions()},\n"
            f"  'dev': [n for n in {DEV_ONLY!r} if u.find_spec(n)],\n"
            "  'files': [services.campaigns.__file__, pb.__file__]}))")
    found = json.loads(_venv_python(image_venv, code, tmp_path))
    assert found["dev"] == [], f"development packages in the image: {found['dev']}"
    dists = found["dists"]
    assert dists.pop("herald", None), "Herald itself is not installed"
    assert dists == _pins(), "installed packages differ from requirements/constraints.txt"
    for f in found["files"]:
        assert Path(f).is_relative_to(image_venv), f


def _spawn(venv: Path, name: str, argv: list[str], run: Path, env: dict[str, str]) -> tuple[procs.Proc, Path]:
    ready = run / f"{name}.ready"
    log_path = run / f"{name}.log"
    with open(log_path, "ab") as fh:
        popen = subprocess.Popen([str(venv / "bin/python"), "-m", *argv], cwd=run, stdout=fh,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=_clean_env(HERALD_READY_FILE=str(ready), **env),
                                 start_new_session=True)
    return procs.Proc(name, popen, log_path), ready


def _health(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5).status


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback only
        return resp.status, resp.read()


@pytest.fixture
def started(image_venv: Path, tmp_path: Path) -> Iterator[dict[str, procs.Proc]]:
    """Every process of the image, each ready, run from a working directory that is not the
    repository (as the image's WORKDIR), on servers of its own (the gateways' durable job
    consumers stay out of the session's JetStream)."""
    run = tmp_path / "run"
    run.mkdir()
    servers: list[procs.Proc] = []
    running: dict[str, procs.Proc] = {}
    try:
        servers += [procs.start_nats(tmp_path / "nats"), procs.start_redis(tmp_path / "redis")]
        common = {"HERALD_NATS_URL": servers[0].info["url"], "HERALD_REDIS_URL": servers[1].info["url"],
                  "HERALD_DB_URL": f"sqlite+aiosqlite:///{run}/herald-{{service}}.db",
                  "HERALD_GRPC_ADDR": "127.0.0.1:0", "HERALD_METRICS_ADDR": "127.0.0.1:0",
                  "HERALD_LOG_FORMAT": "json"}
        sim, sim_ready = _spawn(image_venv, "smsc", ["gateways.smpp.simulator"], run, common)
        running["smsc"] = procs.wait_ready(sim, sim_ready, 60)
        extra = {
            "gateways.smpp": {"HERALD_SMPP_HOST": "127.0.0.1",
                              "HERALD_SMPP_PORT": str(sim.info["smpp_port"])},
            # Production mode: a secret key of its own, no development fallback.
            "gateways.email": {"HERALD_TRACKING_KEYS": os.urandom(16).hex(),
                               "HERALD_SMTP_PORT": str(procs.free_port())},
        }
        readies = {}
        for module, name in PROCESSES.items():  # all at once: they start in parallel
            running[name], readies[name] = _spawn(image_venv, name, [module], run,
                                                  {**common, **extra.get(module, {})})
        for name, ready in readies.items():
            procs.wait_ready(running[name], ready, 60)
        yield running
    finally:
        for proc in [*reversed(running.values()), *reversed(servers)]:
            proc.stop()


def test_every_process_starts_from_the_application_layer(started: dict[str, procs.Proc]) -> None:
    running = started
    for name in PROCESSES.values():
        info = running[name].info
        assert _health(info["grpc_port"]) == health_pb2.HealthCheckResponse.SERVING, name
        status, body = _get(f"http://127.0.0.1:{info['metrics_port']}/metrics")
        assert status == 200 and b"herald_" in body, name
    assert running["smpp-gateway"].info["smpp_bound"] is True, running["smpp-gateway"].log_tail()
    assert _get(f"http://127.0.0.1:{running['email-gateway'].info['tracking_port']}/healthz")[0] == 200

    # A stop as Kubernetes asks for it (SIGTERM): each process drains and exits 0.
    for name in PROCESSES.values():
        running[name].popen.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 40
    for name in PROCESSES.values():
        code = running[name].popen.wait(max(1.0, deadline - time.monotonic()))
        assert code == 0, f"{name} exited {code}:\n{running[name].log_tail()}"


def test_cli_and_migrate_command_run_from_the_application_layer(image_venv: Path, tmp_path: Path) -> None:
    env = _clean_env()
    res = subprocess.run([str(image_venv / "bin/herald"), "--help"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "usage" in res.stdout.lower(), res.stdout + res.stderr
    # The migrate step of a rollout (an init container): `python -m services.recipients migrate`.
    db = tmp_path / "recipients.db"
    res = subprocess.run([str(image_venv / "bin/python"), "-m", "services.recipients", "migrate"],
                         cwd=tmp_path, env={**env, "HERALD_DB_URL": f"sqlite+aiosqlite:///{db}"},
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "migrations applied" in res.stdout, res.stdout + res.stderr
    assert db.stat().st_size > 0
