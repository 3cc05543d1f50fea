"""smpp: messages per second through one gateway process, with receipts, against the SMSC
simulator (its own process), for several windows; and the same load through a plain
blocking smpplib client for comparison.

Per window: --smpp-messages MessageJobs are pre-loaded on JetStream, then a gateway process
starts; the clock runs from its ready line until the simulator has had every receipt
acknowledged (i.e. every DELIVERED event is stored on the bus). The CPU time (utime+stime
from /proc) of the gateway, simulator, nats-server and redis-server over that span gives
each one's CPU per message: they share the machine's cores, so the table says where the
CPU goes. --smpp-profile records the window-100 run with py-spy (py-spy pauses the process
to sample, which inflates that run's CPU) and lists where the gateway's time goes.
The blocking client runs as shipped (Nagle on, at most 1,000 messages) and with TCP_NODELAY.

--smpp-count replaces the timed runs with one counted run per window (and tree, with
--smpp-ab-tree): what the machine's load does not disturb, per message -- Redis commands, round
trips and bytes, NATS messages, bytes and JetStream API calls (--smpp-count-subjects: by kind
of subject, and acks in or out of order), system calls, context switches and page faults of
each process; --smpp-cprofile adds the gateway's Python calls (bench/smpp_counts.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from bench import pyspy, smpp_counts
from bench.email_gateway_runs import start_in_tree
from cli import procs
from shared import bus

TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _stats(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


async def _preload(nats_url: str, subject: str, n: int, run: str) -> None:
    nc = await bus.connect(nats_url, name="bench-smpp")
    js = nc.jetstream()
    await bus.ensure_streams(js)
    items = []
    for i in range(n):
        j = e.MessageJob(message_id=f"{run}-{i:06d}", campaign_id=f"{run}-c", workspace_id="ws-bench",
                         channel=c.CHANNEL_SMS, attempt=1, sender="HERALD",
                         to=f"+447700900{i % 1000:03d}", text=f"Your code is {i:06d} ({run})")
        items.append((subject, j, f"{j.message_id}:1"))
    await bus.publish_many(js, items, concurrency=512)
    await nc.close()


def _cpus(pids: dict[str, int]) -> dict[str, float]:
    return {name: _cpu(pid) for name, pid in pids.items()}


def _cpu_detail(cpu: dict[str, float], n: int) -> str:
    """CPU ms per message of each process (they all share the machine's cores)."""
    return ", ".join(f"{name} {1000 * t / n:.3f}" for name, t in cpu.items()) + " ms CPU/msg"


def _start_gateway(name: str, base: Path, env: dict[str, str], tree: str | None,
                   cprofile: Path | None = None) -> procs.Proc:
    """The gateway of this checkout, or of another one (--smpp-ab-tree: e.g. a git worktree
    of the commit to compare with); under cProfile when `cprofile` names its output."""
    if cprofile is not None:
        here = str(Path(__file__).resolve().parent.parent)
        return smpp_counts.start_profiled(name, base, env, tree or here, cprofile)
    if tree is None:
        return procs.start_module(name, "gateways.smpp", base, env)
    return start_in_tree(name, "gateways.smpp", base, env, tree)


def _gateway_run(base: Path, nats_url: str, redis_url: str, sim_port: int, stats_file: Path,
                 window: int, n: int, profile: Path | None,
                 others: dict[str, int], tree: str | None = None,
                 cprofile: Path | None = None,
                 counts: smpp_counts.Counts | None = None) -> tuple[float, dict[str, float]]:
    """One gateway run; with `counts`, the counters before the gateway starts (its own system
    calls: once it is ready) and when every receipt was acknowledged are left in counts.last."""
    run = f"b{uuid.uuid4().hex[:8]}"
    subject = f"jobs.sms.{run}"
    asyncio.run(_preload(nats_url, subject, n, run))
    before = _stats(stats_file).get("receipts_acked", 0)
    snap0 = counts.snapshot() if counts is not None else {}
    gw = _start_gateway(f"gw-{run}", base, {
        "HERALD_NATS_URL": nats_url, "HERALD_REDIS_URL": redis_url,
        "HERALD_SMPP_HOST": "127.0.0.1", "HERALD_SMPP_PORT": str(sim_port),
        "HERALD_SMPP_WINDOW": str(window), "HERALD_SMPP_JOBS_SUBJECT": subject,
        "HERALD_SMPP_CONSUMER": f"smpp-{run}", "HERALD_LOG_LEVEL": "WARNING",
        "HERALD_GRPC_ADDR": "127.0.0.1:0", "HERALD_METRICS_ADDR": "127.0.0.1:0",
    }, tree, cprofile)
    spy = None
    try:
        pid = gw.popen.pid
        pids = {"gateway": pid, **others}
        if counts is not None:  # the gateway's own system calls from its ready line on
            snap0.update(smpp_counts.syscalls("gateway", pid))
        t0, cpu0 = time.perf_counter(), _cpus(pids)
        spy_bin = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
        if profile is not None and spy_bin:
            spy = subprocess.Popen([spy_bin, "record", "--format", "raw", "-o", str(profile),
                                    "-r", "200", "-p", str(pid)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        deadline = t0 + max(120.0, n / 100)
        while _stats(stats_file).get("receipts_acked", 0) - before < n:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"window {window}: not done in time: {_stats(stats_file)}")
            time.sleep(0.02)
        dt, cpu1 = time.perf_counter() - t0, _cpus(pids)
        cpu = {k: cpu1[k] - cpu0[k] for k in pids}
        if counts is not None:
            counts.last = (snap0, {**counts.snapshot(), **smpp_counts.syscalls("gateway", pid)})
    finally:
        if spy is not None:
            spy.send_signal(2)
            spy.wait(30)
        gw.stop(60.0)
    return dt, cpu


def _smpplib_run(sim_port: int, n: int, nodelay: bool = False) -> float:
    """The same exchange through smpplib's own blocking client: one submit_sm, wait for its
    response, handle receipts as they come (smpplib answers deliver_sm itself).
    smpplib leaves Nagle on: its deliver_sm_resp, written while a submit_sm is unacknowledged,
    then waits for the peer's delayed ACK. nodelay=True sets TCP_NODELAY on its socket."""
    import smpplib.client
    import smpplib.consts

    from shared.adapters import smpplib_internals

    state = {"sent": 0, "receipts": 0}
    cl = smpplib.client.Client("127.0.0.1", sim_port, allow_unknown_opt_params=True)
    cl.set_message_sent_handler(lambda pdu: state.__setitem__("sent", state["sent"] + 1))
    cl.set_message_received_handler(lambda pdu: state.__setitem__("receipts", state["receipts"] + 1))
    cl.connect()
    if nodelay:
        smpplib_internals.set_nodelay(cl)
    cl.bind_transceiver(system_id="bench", password="")
    t0 = time.time()
    for i in range(n):
        cl.send_message(source_addr_ton=5, source_addr="HERALD", dest_addr_ton=1, dest_addr_npi=1,
                        destination_addr=f"447700900{i % 1000:03d}", short_message=f"Blocking code {i:06d} ({t0:.0f})".encode(),
                        data_coding=0, registered_delivery=1)
        while state["sent"] <= i:
            cl.read_once()
    while state["receipts"] < n:
        cl.read_once()
    dt = time.time() - t0
    cl.unbind()
    cl.disconnect()
    return dt


_AREAS = [
    ("SMPP codec", ("gateways/smpp/pdu.py", "encoding.py")),
    ("redis-py", ("redis",)),
    ("nats-py (fetch/publish/ack)", ("nats",)),
    ("protobuf events", ("protobuf", "_pb2", "smpp/events.py")),
    ("asyncio loop / transports", ("leaf:asyncio", "base_events")),
]


def _profile_summary(path: Path, top: int = 12) -> list[tuple[str, str, str]]:
    return pyspy.summarise(path, _AREAS, "other gateway code", top)


def _count_runs(args: argparse.Namespace, base: Path, nats: procs.Proc, redis: procs.Proc,
                port: int, stats_file: Path, others: dict[str, int],
                trees: list[tuple[str, str | None]]) -> list[tuple[str, str, str]]:
    """--smpp-count: one run per window and tree, counted (no timing: the counters and the
    cProfile slow the runs down)."""
    rows: list[tuple[str, str, str]] = []
    counts = smpp_counts.Counts(nats, str(redis.info["url"]),
                                {"nats": nats.popen.pid, "redis": redis.popen.pid}, args.smpp_count_subjects,
                                Path(args.smpp_count_monitor) if args.smpp_count_monitor else None)
    try:
        for w in (int(x) for x in args.smpp_windows.split(",")):
            for label, tree in trees:
                n = args.smpp_messages
                prof = base / f"cprofile-{w}-{len(rows)}.out" if args.smpp_cprofile else None
                dt, cpu = _gateway_run(base, str(nats.info["url"]), str(redis.info["url"]), port,
                                       stats_file, w, n, None, others, tree, prof, counts)
                tag = f" window {w}{label}"
                rows.append((f"count{tag}: CPU (indicative: counting and load disturb it)",
                             f"{n / dt:,.0f} msg/s", _cpu_detail(cpu, n)))
                rows += smpp_counts.Counts.rows(*counts.last, n, tag)
                if prof is not None and prof.exists():
                    rows += smpp_counts.profile_rows(prof, n, tag, args.smpp_cprofile_top)
                    keep = Path(__file__).resolve().parent / "results" / f"smpp-cprofile-w{w}-{'ab' if tree else 'this'}.out"
                    keep.parent.mkdir(exist_ok=True)
                    shutil.copy(prof, keep)
    finally:
        counts.close()
    return rows


def run(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    n = args.smpp_messages
    windows = [int(w) for w in args.smpp_windows.split(",")]
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        nats = (smpp_counts.start_nats(base / "nats") if args.smpp_count
                else procs.start_nats(base / "nats"))
        redis = procs.start_redis(base / "redis")
        stats_file = base / "smsc.json"
        sim = procs.start_module("smsc", "gateways.smpp.simulator", base, {
            "HERALD_SMPP_SIM_RECEIPT_DELAY": str(args.smpp_receipt_delay),
            "HERALD_SMPP_SIM_STATS_FILE": str(stats_file), "HERALD_LOG_LEVEL": "WARNING",
            "HERALD_SMPP_SIM_ID_STYLE": "mixed",
        })
        try:
            port = int(sim.info["smpp_port"])
            others = {"simulator": sim.popen.pid, "nats": nats.popen.pid, "redis": redis.popen.pid}
            best = 0.0
            # --smpp-ab-tree: the other checkout's gateway and this one's, run alternately
            trees: list[tuple[str, str | None]] = [("", None)]
            if args.smpp_ab_tree:
                trees = [(f", tree {args.smpp_ab_tree}", args.smpp_ab_tree), (", this tree", None)]
            if args.smpp_count:
                return _count_runs(args, base, nats, redis, port, stats_file, others, trees)
            for w in windows:
                count = n if w > 1 else min(n, 2000)
                by_tree: dict[str, list[tuple[float, float, dict[str, float]]]] = {
                    label: [] for label, _ in trees}
                profiled = base / "profile.txt" if args.smpp_profile and w == 100 else None
                for k in range(max(1, args.smpp_repeat)):
                    for label, tree in (trees if k % 2 == 0 else trees[::-1]):
                        # py-spy slows its run: one run of this tree
                        prof = profiled if k == 0 and tree is None else None
                        dt, cpu = _gateway_run(base, str(nats.info["url"]), str(redis.info["url"]),
                                               port, stats_file, w, count, prof, others, tree)
                        by_tree[label].append((count / dt, dt, cpu))
                for label, runs in by_tree.items():
                    cpus = ", ".join(f"{1000 * r[2]['gateway'] / count:.3f}" for r in runs)
                    runs.sort(key=lambda r: r[0])
                    rate, dt, cpu = runs[len(runs) // 2]  # the median run
                    best = max(best, rate)
                    each = ", ".join(f"{r[0]:,.0f}" for r in runs)
                    gw_cpus = sorted(1000 * r[2]["gateway"] / count for r in runs)
                    rows.append((f"gateway window {w}{label}", f"{rate:,.0f} msg/s",
                                 f"median of {len(runs)} (runs {each}); {count} msgs with receipts "
                                 f"in {dt:.2f} s; {_cpu_detail(cpu, count)}; gateway CPU median "
                                 f"{gw_cpus[len(gw_cpus) // 2]:.3f} ms/msg (runs in order {cpus})"))
                if profiled is not None and profiled.exists():
                    rows += _profile_summary(profiled)
                    keep = Path(__file__).resolve().parent / "results" / f"smpp-profile-{int(time.time())}.txt"
                    keep.parent.mkdir(exist_ok=True)
                    shutil.copy(profiled, keep)  # raw py-spy stacks, for a closer look
            m = min(n, args.smpp_blocking_messages)
            pids = {"client": os.getpid(), "simulator": sim.popen.pid}
            blocking = 0.0
            for nodelay in (False, True):
                k = m if nodelay else min(m, 1000)  # with Nagle on, each message waits ~10 ms
                cpu0 = _cpus(pids)
                dt = _smpplib_run(port, k, nodelay)
                cpu1 = _cpus(pids)
                blocking = k / dt
                label = "with TCP_NODELAY" if nodelay else "as shipped (Nagle on)"
                rows.append((f"blocking smpplib client, {label}", f"{blocking:,.0f} msg/s",
                             f"{k} msgs with receipts in {dt:.2f} s (SMPP only: no NATS, no Redis); "
                             + _cpu_detail({p: cpu1[p] - cpu0[p] for p in pids}, k)))
            rows.append(("ratio best gateway / blocking smpplib (TCP_NODELAY)", f"{best / blocking:.1f} x",
                         "goal: gateway >= 5,000 msg/s"))
            time.sleep(0.3)  # the simulator rewrites its stats file every 50 ms
            truth = _stats(stats_file)
            rows.append(("simulator ground truth", f"{truth.get('duplicate_submits')} duplicates",
                         f"{truth.get('submits_accepted')} accepted, {truth.get('receipts_acked')} receipts acked"))
        finally:
            sim.stop()
            redis.stop()
            nats.stop()
    return rows


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--smpp-messages", type=int, default=20000, help="smpp: messages per window")
    ap.add_argument("--smpp-windows", default="1,10,100,500", help="smpp: windows to measure")
    ap.add_argument("--smpp-receipt-delay", type=float, default=0.01, help="smpp: simulator receipt delay")
    ap.add_argument("--smpp-blocking-messages", type=int, default=5000,
                    help="smpp: messages through the blocking smpplib client")
    ap.add_argument("--smpp-profile", action="store_true", help="smpp: py-spy the window-100 run")
    ap.add_argument("--smpp-ab-tree", default="",
                    help="smpp: another checkout (e.g. `git worktree add /tmp/base <commit>`) whose "
                         "gateway runs alternately with this one's, both reported")
    ap.add_argument("--smpp-count", action="store_true",
                    help="smpp: instead of timed runs, one counted run per window (and tree): Redis "
                         "commands and round trips, NATS messages/bytes by kind, JetStream API calls, per message")
    ap.add_argument("--smpp-count-subjects", action="store_true",
                    help="smpp: with --smpp-count, NATS messages by kind of subject (a subscriber on '>')")
    ap.add_argument("--smpp-count-monitor", default="",
                    help="smpp: with --smpp-count, every Redis command (MONITOR) appended to this file")
    ap.add_argument("--smpp-cprofile", action="store_true",
                    help="smpp: with --smpp-count, the gateway's Python calls per message (cProfile)")
    ap.add_argument("--smpp-cprofile-top", type=int, default=40, help="smpp: functions listed per profile")
    ap.add_argument("--smpp-repeat", type=int, default=3,
                    help="smpp: runs per window (the median is reported; the machine is shared)")
