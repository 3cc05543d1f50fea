"""Loaded (by PYTHONPATH) into the services of a profiled pipeline run: the CPU time
aiosqlite's threads spend in each SQL statement, written every half second to
$HERALD_BENCH_SQLTIME_DIR/<pid>.json as {statement: [calls, cpu seconds]}. A fetch counts
for the statement its cursor ran; a commit as COMMIT. py-spy sees these threads only as
"inside sqlite3"."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from typing import Any

OUT = os.environ.get("HERALD_BENCH_SQLTIME_DIR", "")
_times: dict[str, list[float]] = {}
_cursor_sql: dict[int, str] = {}
_lock = threading.Lock()


def _key(sql: str) -> str:
    """A statement shortened to its kind and table(s): parameters and column lists vary."""
    s = " ".join(sql.split())
    m = re.match(r"(?i)(SELECT .*? FROM \S+(?: JOIN \S+)?|UPDATE \S+|INSERT INTO \S+|DELETE FROM \S+)", s)
    head = m.group(1) if m else s[:60]
    if head.upper().startswith("SELECT") and len(head) > 90:
        head = head[:60] + "..." + head[head.upper().rfind(" FROM "):]
    where = re.search(r"(?i) WHERE (.{0,70})", s)
    return head + (f" WHERE {where.group(1)}" if where else "")


def _label(fn: Any, args: tuple) -> str:
    name = getattr(fn, "__name__", str(fn))
    owner = getattr(fn, "__self__", None)
    if name in ("execute", "executemany") and args and isinstance(args[0], str):
        key = _key(args[0]) + (" [many]" if name == "executemany" else "")
        if owner is not None:
            _cursor_sql[id(owner)] = key
        return key
    if name.startswith("fetch") and owner is not None:
        return _cursor_sql.get(id(owner), "fetch ?")
    return name.upper() if name in ("commit", "rollback") else name


def _install() -> None:
    try:
        from aiosqlite import core
    except ImportError:
        return
    original = core.Connection._execute  # noqa: SLF001

    async def _execute(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        key = _label(fn, args)

        def timed() -> Any:
            t = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.thread_time() - t
                with _lock:
                    c = _times.setdefault(key, [0, 0.0])
                    c[0] += 1
                    c[1] += dt

        return await original(self, timed)

    core.Connection._execute = _execute  # noqa: SLF001

    def dump() -> None:
        path = os.path.join(OUT, f"{os.getpid()}.json")
        while True:
            time.sleep(0.5)
            with _lock:
                text = json.dumps(_times)
            with open(path + ".tmp", "w") as fh:
                fh.write(text)
            os.replace(path + ".tmp", path)

    threading.Thread(target=dump, daemon=True, name="sqltime").start()


if OUT:
    _install()
