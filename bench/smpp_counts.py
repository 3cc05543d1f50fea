"""Counts per message of one SMPP gateway run (bench --only smpp --smpp-count): what the
machine's load does not disturb, for comparing two gateways message for message.

- Redis: commands by name (INFO commandstats deltas), read events (`total_reads_processed`:
  one per request or pipeline the server read, i.e. round trips) and bytes in/out;
- NATS: messages and bytes in/out (the server's /varz), JetStream API calls (/jsz), and
  messages by kind of subject (a wildcard subscriber on `>`: job fetches, acks by kind,
  publishes to events, replies to inboxes);
- the gateway's Python calls (cProfile, enabled by SIGUSR1 once the gateway is ready, so
  start-up is not counted; written at exit), by function.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pstats
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import nats
import redis

from cli import procs


def start_nats(workdir: Path) -> procs.Proc:
    """nats-server with JetStream and its monitoring port (info: url, port, http)."""
    port, http = procs.free_port(), procs.free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "nats.log"
    with open(log_path, "ab") as fh:
        popen = subprocess.Popen([procs.find_binary("nats-server"), "-a", "127.0.0.1", "-p", str(port),
                                  "-m", str(http), "-js", "-sd", str(workdir / "nats-store")],
                                 stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
    proc = procs.Proc("nats", popen, log_path)
    deadline = time.monotonic() + 20
    while "Server is ready" not in log_path.read_text(errors="replace"):
        if not proc.alive() or time.monotonic() > deadline:
            proc.stop()
            raise RuntimeError(f"nats-server not ready:\n{proc.log_tail()}")
        time.sleep(0.05)
    proc.info = {"url": f"nats://127.0.0.1:{port}", "port": port, "http": http}
    return proc


def _subject_kind(subject: str, data: bytes) -> str:
    if subject.startswith("$JS.ACK."):
        return f"ack {data[:4].decode(errors='replace')}"
    if subject.startswith("$JS.API.CONSUMER.MSG.NEXT."):
        return "fetch request (MSG.NEXT)"
    if subject.startswith("$JS.API."):
        return "JS API " + ".".join(subject.split(".")[2:4])
    if subject.startswith("_INBOX.") or subject.startswith("_I."):
        return "reply to an inbox (fetched job / pub ack / API reply)"
    parts = subject.split(".")
    return "publish " + ".".join(parts[:3] if parts[0] == "events" else parts[:2])


class SubjectTap:
    """Every message the server routes, counted by kind of subject (its own thread)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.counts: Counter[str] = Counter()
        self._acked: set[int] = set()
        self._floor = [0]  # the sequence up to which every job was acked (0: none yet)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._loop.run_forever()

    async def _start(self) -> None:
        acked, floor = self._acked, self._floor

        async def tally(msg) -> None:
            subject = msg.subject
            self.counts[_subject_kind(subject, msg.data)] += 1
            if subject.startswith("$JS.ACK.") and msg.data[:4] == b"+ACK":
                # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>....: whether this ack
                # moves the consumer's ack floor (in order) or leaves a gap behind (out of order)
                seq = int(subject.split(".")[5])
                if floor[0] == 0 or seq < floor[0]:
                    floor[0] = seq - 1
                acked.add(seq)
                if seq == floor[0] + 1:
                    self.counts["ack at the ack floor (in order)"] += 1
                    while floor[0] + 1 in acked:
                        acked.discard(floor[0] + 1)
                        floor[0] += 1
                else:
                    self.counts["ack above a gap (out of order)"] += 1

        self._nc = await nats.connect(self.url, name="bench-count-tap", pending_size=1 << 28)
        await self._nc.subscribe(">", cb=tally, pending_msgs_limit=-1, pending_bytes_limit=-1)
        await self._nc.flush()
        self._ready.set()

    def snapshot(self) -> Counter[str]:
        async def flushed() -> Counter[str]:
            await self._nc.flush()
            await asyncio.sleep(0.2)
            self._acked.clear()  # a run's jobs follow the previous run's in the stream
            self._floor[0] = 0
            return Counter(self.counts)
        return asyncio.run_coroutine_threadsafe(flushed(), self._loop).result(30)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._nc.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


def syscalls(name: str, pid: int) -> dict[str, int]:
    """read/write system calls of a process so far (socket reads and writes: how batched its
    traffic is), its threads' context switches and its minor page faults."""
    out = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("syscr", "syscw"):
            out[f"{name} {key}"] = int(value)
    # how often its threads slept waiting (voluntary: e.g. an event loop with nothing to do)
    # or were preempted, and the page faults of the process (memory it touched anew)
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for line in (task / "status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
                    out[f"{name} {key}"] = out.get(f"{name} {key}", 0) + int(value)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    out[f"{name} minor page faults"] = int(fields[7])
    return out


def _http_json(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return json.loads(r.read())


class Counts:
    """Snapshots of the servers' counters; `rows` gives the per-message deltas of a run."""

    def __init__(self, nats_proc: procs.Proc, redis_url: str, pids: dict[str, int],
                 subjects: bool, monitor: Path | None = None) -> None:
        self.http = int(nats_proc.info["http"])
        self.redis = redis.Redis.from_url(redis_url)
        self.pids = dict(pids)
        self.tap = SubjectTap(str(nats_proc.info["url"])) if subjects else None
        self.last: tuple[dict[str, float], dict[str, float]] = ({}, {})
        if monitor is not None:  # every Redis command, as MONITOR shows it (small runs only)
            threading.Thread(target=self._monitor, args=(redis_url, monitor), daemon=True).start()

    @staticmethod
    def _monitor(url: str, path: Path) -> None:
        with open(path, "a") as out, redis.Redis.from_url(url).monitor() as m:
            for cmd in m.listen():
                out.write(f"{cmd['time']:.6f} {cmd['client_address']}:{cmd['client_port']} {cmd['command']}\n")
                out.flush()

    def snapshot(self) -> dict[str, float]:
        snap: dict[str, float] = {}
        for k, v in (self.tap.snapshot() if self.tap is not None else {}).items():
            snap[f"nats msgs: {k}"] = v
        for name, pid in self.pids.items():
            snap.update(syscalls(name, pid))
        for name, st in self.redis.info("commandstats").items():
            snap[f"redis cmd {name.removeprefix('cmdstat_')}"] = st["calls"]
        stats = self.redis.info("stats")
        for k in ("total_commands_processed", "total_reads_processed", "total_writes_processed",
                  "total_net_input_bytes", "total_net_output_bytes"):
            snap[f"redis {k}"] = stats[k]
        varz = _http_json(self.http, "/varz")
        for k in ("in_msgs", "out_msgs", "in_bytes", "out_bytes"):
            snap[f"nats varz {k}"] = varz[k]
        api = _http_json(self.http, "/jsz").get("api", {})
        snap["nats jsz api total"] = api.get("total", 0)
        snap["nats jsz api errors"] = api.get("errors", 0)
        return snap

    @staticmethod
    def rows(before: dict[str, float], after: dict[str, float], n: int, label: str) -> list[tuple[str, str, str]]:
        out = []
        for key in sorted(set(before) | set(after)):
            d = after.get(key, 0) - before.get(key, 0)
            if d:
                out.append((f"count{label}: {key}", f"{d / n:.4f} /msg", f"{d:.0f} in {n} msgs"))
        return out

    def close(self) -> None:
        if self.tap is not None:
            self.tap.close()
        self.redis.close()


def start_profiled(name: str, work: Path, env: dict[str, str], tree: str, out: Path) -> procs.Proc:
    """`python -m gateways.smpp` of `tree` under cProfile: profiling starts at SIGUSR1 (sent
    once the gateway is ready) and the stats are written to `out` when the process ends."""
    ready = work / f"{name}.ready"
    ready.unlink(missing_ok=True)
    log_path = work / f"{name}.log"
    code = ("import cProfile, gc, json, runpy, signal, sys\n"
            f"sys.path.insert(0, {tree!r})\n"
            "p = cProfile.Profile()\n"
            "gc0 = []\n"
            "signal.signal(signal.SIGUSR1, lambda *a: (gc0.append(gc.get_stats()), p.enable()))\n"
            "try:\n"
            "    runpy.run_module('gateways.smpp', run_name='__main__', alter_sys=True)\n"
            "finally:\n"
            f"    p.disable(); p.dump_stats({str(out)!r})\n"
            f"    open({str(out) + '.gc'!r}, 'w').write(json.dumps([gc0[0], gc.get_stats()]))\n")
    with open(log_path, "wb") as fh:
        popen = subprocess.Popen([sys.executable, "-c", code], stdout=fh, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, cwd=tree, start_new_session=True,
                                 env={**os.environ, **env, "HERALD_READY_FILE": str(ready)})
    proc = procs.wait_ready(procs.Proc(name, popen, log_path), ready, 60.0)
    popen.send_signal(signal.SIGUSR1)
    return proc


def profile_rows(path: Path, n: int, label: str, top: int = 40) -> list[tuple[str, str, str]]:
    """Total Python calls per message, garbage collections by generation, and the functions
    called most, per message."""
    st = pstats.Stats(str(path))
    total = sum(v[1] for v in st.stats.values())  # type: ignore[attr-defined]
    rows = [(f"python calls{label}", f"{total / n:.1f} /msg", f"{total} calls in {n} msgs")]
    with contextlib.suppress(OSError, ValueError):
        gc0, gc1 = json.loads(Path(f"{path}.gc").read_text())
        for gen, (a, b) in enumerate(zip(gc0, gc1, strict=True)):
            runs, freed = b["collections"] - a["collections"], b["collected"] - a["collected"]
            rows.append((f"gc generation {gen}{label}", f"{runs / n * 1000:.3f} /1000 msgs",
                         f"{runs} collections, {freed} objects freed"))
    by_calls = sorted(st.stats.items(), key=lambda kv: -kv[1][1])  # type: ignore[attr-defined]
    for (file, line, fn), (_cc, nc, tt, _ct, _callers) in by_calls[:top]:
        where = "/".join(Path(file).parts[-2:]) if file != "~" else "builtin"
        rows.append((f"  calls{label} {where}:{line} {fn}", f"{nc / n:.3f} /msg",
                     f"own {1e6 * tt / n:.2f} us/msg"))
    return rows
