"""kannel: Kannel (Debian's package: bearerbox + smsbox) and Herald side by side against the
same SMSC simulator (python -m gateways.smpp.simulator, the same settings, receipts on).

Kannel is configured for throughput as its user guide describes: 4 SMPP binds (one smsc
group, `instances = 4`, transceiver mode), a window of 100 (`max-pending-submits`), log
level 1 (info, not debug), internal DLR storage, the spool message store; --kannel-messages
SMS are sent through smsbox's HTTP sendsms (64 concurrent connections) with dlr-mask 31 and
a dlr-url this bench answers; the clock runs from the first request until the simulator had
every receipt acknowledged. Herald's run: the pipeline (contacts already in a category;
approve -> every message DELIVERED in stats, and apart the time until the simulator had
every receipt acknowledged) for the same count. Runs are interleaved (Kannel, Herald,
Kannel, ...) and the medians reported, with each system's CPU per message (Kannel:
bearerbox + smsbox; Herald: all its processes, nats-server, redis-server; the simulator
and the load generator apart). The Kannel configuration is generated in a temporary
directory; apt installs the package (`make bench` does, through ensure-deps --bench).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import herald_stack as hs
from bench.measure import Usage, Watch, median, row
from cli import procs


@dataclass
class Kannel:
    bearerbox: subprocess.Popen[bytes]
    smsbox: subprocess.Popen[bytes]
    sendsms_port: int
    work: Path


def _config(work: Path, smsc_port: int, ports: dict[str, int], log_level: int, store: str = "spool") -> Path:
    conf = work / "kannel.conf"
    # The message store keeps queued SMS across a restart (Herald's JetStream does too);
    # "none" measures Kannel without it.
    store_lines = f'store-type = spool\nstore-location = "{work}/spool"\n' if store == "spool" else ""
    conf.write_text(f"""\
group = core
admin-port = {ports['admin']}
admin-interface = 127.0.0.1
smsbox-interface = 127.0.0.1
admin-password = bench
status-password = bench
smsbox-port = {ports['smsbox']}
box-allow-ip = 127.0.0.1
log-file = "{work}/bearerbox.log"
log-level = {log_level}
dlr-storage = internal
{store_lines}sms-incoming-queue-limit = -1

group = smsc
smsc = smpp
smsc-id = sim
host = 127.0.0.1
port = {smsc_port}
transceiver-mode = true
smsc-username = kannel
smsc-password = bench
system-type = ""
instances = 4
max-pending-submits = 100
source-addr-ton = 5
source-addr-npi = 0
dest-addr-ton = 1
dest-addr-npi = 1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {ports['smsbox']}
sendsms-port = {ports['sendsms']}
sendsms-interface = 127.0.0.1
log-file = "{work}/smsbox.log"
log-level = {log_level}

group = sendsms-user
username = bench
password = bench
max-messages = 1

group = sms-service
keyword = default
text = "ok"
""")
    (work / "spool").mkdir(exist_ok=True)
    return conf


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            logs = [p for p in (log, log.parent / "kannel.out") if p.exists()]
            raise RuntimeError(f"{what} exited: " + " | ".join(p.read_text(errors="replace")[-1500:] for p in logs))
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} not listening on {port} after {timeout}s")


def _binds(stats: Path) -> int:
    try:
        return int(json.loads(stats.read_text()).get("binds", 0))
    except (OSError, ValueError):
        return 0


@contextlib.contextmanager
def kannel(work: Path, smsc_port: int, sim_stats: Path, log_level: int, store: str = "spool") -> Iterator[Kannel]:
    bb_bin, sb_bin = shutil.which("bearerbox") or "/usr/sbin/bearerbox", shutil.which("smsbox") or "/usr/sbin/smsbox"
    if not Path(bb_bin).exists():
        raise RuntimeError("Kannel is not installed: apt-get install kannel (make bench does)")
    ports = {k: procs.free_port() for k in ("admin", "smsbox", "sendsms")}
    conf = _config(work, smsc_port, ports, log_level, store)
    binds0 = _binds(sim_stats)
    out = open(work / "kannel.out", "ab")  # noqa: SIM115 - the children own it
    bb = subprocess.Popen([bb_bin, str(conf)], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                          start_new_session=True, cwd=work)
    sb = None
    try:
        _wait_port(ports["smsbox"], bb, "bearerbox", work / "bearerbox.log")
        sb = subprocess.Popen([sb_bin, str(conf)], stdout=out, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, start_new_session=True, cwd=work)
        _wait_port(ports["sendsms"], sb, "smsbox", work / "smsbox.log")
        deadline = time.monotonic() + 30
        while _binds(sim_stats) - binds0 < 4:  # every SMPP bind up before the clock starts
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kannel bound {_binds(sim_stats) - binds0} of 4 SMPP sessions")
            time.sleep(0.1)
        yield Kannel(bb, sb, ports["sendsms"], work)
    finally:
        for p in (sb, bb):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        out.close()


@contextlib.contextmanager
def started_kannel(work: Path, smsc_port: int, sim_stats: Path, log_level: int, store: str = "spool") -> Iterator[Kannel]:
    """kannel(), tried again on new ports when one was taken between choosing and binding it."""
    for attempt in range(3):
        try:
            cm = kannel(work, smsc_port, sim_stats, log_level, store)
            k = cm.__enter__()
        except RuntimeError as exc:
            if "Address already in use" not in str(exc) or attempt == 2:
                raise
            continue
        try:
            yield k
        except BaseException as exc:
            if not cm.__exit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            cm.__exit__(None, None, None)
        return


async def _send(k: Kannel, n: int, conns: int, acked: Any, tag: str) -> tuple[float, float, dict[str, int], int]:
    """n sendsms requests over `conns` connections; the DLR callbacks answered here.
    Returns (seconds until the simulator had n receipts acked, seconds until the n-th
    "delivered" callback (0: not in time), callbacks by DLR type, HTTP errors)."""
    from aiohttp import ClientSession, TCPConnector, web

    dlrs: dict[str, int] = {}
    delivered_at = [0.0]  # when the n-th "delivered" (type 1) callback came
    all_delivered = asyncio.Event()

    async def on_dlr(req: web.Request) -> web.Response:
        t = req.query.get("type", "?")
        dlrs[t] = dlrs.get(t, 0) + 1
        if t == "1" and dlrs[t] == n:
            delivered_at[0] = time.perf_counter()
            all_delivered.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/dlr", on_dlr)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    dlr_port = procs.free_port()
    await web.TCPSite(runner, "127.0.0.1", dlr_port).start()
    errors = 0
    url = f"http://127.0.0.1:{k.sendsms_port}/cgi-bin/sendsms"
    try:
        async with ClientSession(connector=TCPConnector(limit=conns)) as http:
            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in range(n):
                queue.put_nowait(i)

            async def worker() -> None:
                nonlocal errors
                while True:
                    try:
                        i = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    params = {"username": "bench", "password": "bench", "from": "HERALD",
                              "to": hs.phone(i).removeprefix("+"),
                              "text": f"Hi Bench{i}, your code is 1234.", "dlr-mask": "31",
                              "dlr-url": f"http://127.0.0.1:{dlr_port}/dlr?type=%d&id={tag}-{i}"}
                    async with http.get(url, params=params) as r:
                        await r.read()
                        if r.status >= 300:
                            errors += 1

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(conns)))
            deadline = t0 + max(120.0, n / 50)
            while acked() < n:
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"Kannel: {acked()}/{n} receipts acked in time ({errors} HTTP errors)")
                await asyncio.sleep(0.02)
            took = time.perf_counter() - t0
            with contextlib.suppress(TimeoutError):  # smsbox calls the dlr-url after bearerbox acked
                await asyncio.wait_for(all_delivered.wait(), 60)
    finally:
        await runner.cleanup()
    return took, (delivered_at[0] - t0) if delivered_at[0] else 0.0, dlrs, errors


@dataclass
class Outcome:
    rate: float
    seconds: float
    use: Usage
    system_cpu: float  # CPU seconds of the system under test (not the simulator, not the load)
    note: str


def kannel_run(n: int, args: argparse.Namespace) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="kannel-bench-") as tmp:
        work = Path(tmp)
        stats = work / "smsc.json"
        sim = procs.start_module("smsc", "gateways.smpp.simulator", work, hs.simulator_env(args.receipt_delay, stats))
        try:
            def acked() -> int:
                try:
                    return int(json.loads(stats.read_text()).get("receipts_acked", 0))
                except (OSError, ValueError):
                    return 0

            with started_kannel(work, int(sim.info["smpp_port"]), stats, args.kannel_log_level,
                                args.kannel_store) as k:
                watch = Watch({"bearerbox": k.bearerbox.pid, "smsbox": k.smsbox.pid,
                               "simulator": sim.popen.pid}).start()
                took, to_dlr, dlrs, errors = asyncio.run(_send(k, n, args.kannel_http_conns, acked, work.name))
                use = watch.stop()
            bb_log = (work / "bearerbox.log").read_text(errors="replace")
            unmatched = bb_log.count("DLR not found")
            truth = json.loads(stats.read_text())
        finally:
            sim.stop()
    sys_cpu = use.cpu["bearerbox"] + use.cpu["smsbox"]
    dlr = f"{to_dlr:.2f} s ({n / to_dlr:,.0f} msg/s)" if to_dlr else "not within 60 s"
    note = (f"until the {n:,}th 'delivered' dlr-url callback {dlr}; "
            f"simulator: {truth.get('submits_accepted')} accepted, {truth.get('receipts_acked')} receipts acked, "
            f"{truth.get('duplicate_submits')} duplicates; DLR callbacks by type {dict(sorted(dlrs.items()))}; "
            f"{errors} HTTP errors; {unmatched} receipts bearerbox found no DLR for; store {args.kannel_store}, "
            f"log-level {args.kannel_log_level} ({len(bb_log) // 1024:,} KiB of bearerbox log)")
    return Outcome(n / took, took, use, sys_cpu, note)


def herald_run(n: int, args: argparse.Namespace) -> Outcome:
    with hs.herald(args.kannel_herald_db, args.receipt_delay) as running:
        async def go() -> tuple[hs.CampaignRun, Usage]:
            cl = running.clients()
            try:
                cat, _took, _how = await hs.import_contacts(cl, n, args.import_batch, args.import_concurrency)
                cid = await hs.sms_campaign(cl, cat, f"bench kannel {n}")
                watch = Watch(running.pids(), running.pg_names).start()
                cr = await hs.approve_and_follow(cl, cid, n, receipts_acked=lambda: int(running.smsc().get("receipts_acked", 0)))
                return cr, watch.stop().group("pg:", "postgres backends")
            finally:
                await cl.close()

        cr, use = asyncio.run(go())
    sys_cpu = use.total() - use.cpu.get("simulator", 0.0)
    note = (f"approve -> all receipts acked at the simulator {cr.acked:.2f} s ({n / cr.acked:,.0f} msg/s); "
            f"-> all DELIVERED in stats {cr.seconds:.2f} s (includes BUILDING {cr.phases.get('BUILDING', 0):.2f} s)")
    return Outcome(n / cr.seconds, cr.seconds, use, sys_cpu, note)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    n = args.kannel_messages
    results: dict[str, list[Outcome]] = {"Kannel": [], "Herald": []}
    for _ in range(max(1, args.kannel_runs)):
        results["Kannel"].append(kannel_run(n, args))
        results["Herald"].append(herald_run(n, args))
    out = []
    for name, runs in results.items():
        by_rate = sorted(runs, key=lambda o: o.rate)
        mid = by_rate[len(by_rate) // 2]
        what = ("bearerbox + smsbox, HTTP sendsms (dlr-mask 31), until the simulator acked every receipt"
                if name == "Kannel" else "Herald pipeline, approve -> all DELIVERED in stats")
        out.append(row(f"{name}: {n:,} SMS with receipts", round(median([o.rate for o in runs]), 1), "msg/s",
                       f"median of {len(runs)} interleaved (runs {', '.join(f'{o.rate:,.0f}' for o in runs)}); "
                       f"{what}; median run: {mid.note}", mid.use.load()))
        out.append(row(f"  {name}: CPU per message, whole system", round(median([1000 * o.system_cpu / n for o in runs]), 3),
                       "ms/msg", f"median; median run: {mid.use.cpu_per(n)} (simulator is not the system)",
                       mid.use.load()))
    k_rate, h_rate = (median([o.rate for o in results[s]]) for s in ("Kannel", "Herald"))
    k_cpu, h_cpu = (median([o.system_cpu for o in results[s]]) for s in ("Kannel", "Herald"))
    out.append(row("Herald / Kannel", round(h_rate / k_rate, 2), "x msg/s",
                   f"CPU per message Herald / Kannel {h_cpu / max(k_cpu, 1e-9):.2f} x (medians; Kannel's store "
                   f"{args.kannel_store})"))
    return out


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--kannel-messages", type=int, default=10000, help="kannel: SMS per run (both systems)")
    ap.add_argument("--kannel-runs", type=int, default=3, help="kannel: interleaved runs of each system")
    ap.add_argument("--kannel-http-conns", type=int, default=64, help="kannel: concurrent sendsms connections")
    ap.add_argument("--kannel-log-level", type=int, default=1, help="kannel: bearerbox/smsbox log-level (0 = debug)")
    ap.add_argument("--kannel-store", choices=("spool", "none"), default="spool",
                    help="kannel: bearerbox's message store (spool: queued SMS survive a restart)")
    ap.add_argument("--kannel-herald-db", default="sqlite", help="kannel: Herald's database (sqlite or postgres)")
