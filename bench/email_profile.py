"""py-spy on an email gateway process during a run, summarised by the gateway's areas."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench import pyspy

AREAS = [
    ("redis-py", ("redis",)),
    ("compose", ("skeleton.py", "plaintpl.py", "links.py", "tokens.py")),
    ("SMTP client", ("smtp_pool.py", "smtp_session.py", "smtp_types.py")),
    ("tracking HTTP", ("aiohttp", "tracking.py")),
    ("NATS (fetch/publish/ack)", ("jsfast", "nats")),
    ("protobuf events", ("protobuf", "_pb2", "events.py")),
    ("metrics", ("prometheus",)),
]


def start(pid: int, profile: Path | None) -> subprocess.Popen[bytes] | None:
    """py-spy recording the gateway into `profile`; None when no profile is asked for or
    py-spy is not installed. Each sample pauses the process: a profiled run's figures are
    a little lower."""
    if profile is None or not pyspy.binary():
        return None
    return pyspy.record(pid, profile, rate=200)


def stop(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is not None:
        pyspy.stop(spy)


def summary(path: Path, top: int = 25) -> list[tuple[str, str, str]]:
    """Total time by area and own (leaf) time by function, from py-spy's raw output."""
    return pyspy.summarise(path, AREAS, "other", top)
