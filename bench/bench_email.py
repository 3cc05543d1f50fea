"""email: one email gateway process against a local SMTP sink, and its tracking endpoint.

1. --email-jobs jobs (a realistic ~8 KB HTML newsletter with a dozen links, text part,
   personalised fields) pre-loaded on JetStream; the gateway is started afterwards and
   the time from its ready line until the consumer is drained gives emails/s. The sink
   is a minimal PIPELINING SMTP responder in its own process (aiosmtpd plus .eml files
   is measured too, as a second figure: it, not the gateway, is then the limit).
   Repeated with an RSA-2048 DKIM key when --email-dkim.
2. Tracking: wrk (`apt-get install wrk`; skipped when absent) in a separate process for
   --email-track-seconds against the open pixel and the click redirect; requests/s, p99
   latency, gateway CPU per request.
3. Where the time goes: per-stage CPU cost measured in this process (compose, DKIM,
   SMTP transaction, Redis claim+record, event publish).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from bench import pyspy
from cli import procs
from shared import bus

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-tracking-key"


# --- the fast sink ---------------------------------------------------------------------

class FastSmtp(asyncio.Protocol):
    """Just enough ESMTP with PIPELINING to accept mail as fast as a socket allows."""

    count = 0

    def connection_made(self, transport: Any) -> None:
        self.t = transport
        self.buf = b""
        self.in_data = False
        transport.write(b"220 bench-sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buf += data
        out = []
        while self.buf:
            if self.in_data:
                probe = b"\r\n" + self.buf
                i = probe.find(b"\r\n.\r\n")
                if i < 0:
                    break
                self.buf = probe[i + 5:]
                self.in_data = False
                FastSmtp.count += 1
                out.append(b"250 2.0.0 OK queued\r\n")
                continue
            i = self.buf.find(b"\r\n")
            if i < 0:
                break
            line, self.buf = self.buf[:i], self.buf[i + 2:]
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                out.append(b"250-bench-sink\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                self.in_data = True
                out.append(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                out.append(b"221 bye\r\n")
                self.t.write(b"".join(out))
                self.t.close()
                return
            else:
                out.append(b"250 2.1.0 OK\r\n")
        if out:
            self.t.write(b"".join(out))


def serve_fast_sink(ready: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(FastSmtp, "127.0.0.1", 0)
        Path(ready).write_text(str(server.sockets[0].getsockname()[1]))  # noqa: ASYNC240 (once, at start)
        await asyncio.Event().wait()

    try:
        import uvloop
        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


def start_fast_sink(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    ready = work / "fast-sink.port"
    p = subprocess.Popen([sys.executable, "-c",
                          f"from bench.bench_email import serve_fast_sink; serve_fast_sink({str(ready)!r})"],
                         cwd=ROOT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if ready.exists() and ready.read_text():
            return p, int(ready.read_text())
        time.sleep(0.05)
    p.kill()
    raise RuntimeError("fast sink did not start")


# --- the newsletter --------------------------------------------------------------------

def newsletter() -> tuple[str, str, str]:
    items = []
    for i in range(10):
        items.append(
            f'<tr><td style="padding:12px 24px;font-family:Helvetica,Arial,sans-serif;font-size:15px;'
            f'line-height:22px;color:#333333"><h2 style="margin:0 0 8px;font-size:18px;color:#111111">'
            f'Story {i + 1}: what changed this week</h2><p style="margin:0 0 8px">Lorem ipsum dolor '
            f'sit amet, consectetur adipiscing elit. Integer nec odio praesent libero, sed cursus ante '
            f'dapibus diam. Sed nisi nulla quis sem at nibh elementum imperdiet.</p>'
            f'<a href="https://www.example.com/news/{i + 1}?utm_source=herald&amp;utm_medium=email'
            f'&amp;utm_campaign=weekly" style="color:#0066cc">Read more</a></td></tr>')
    html = (
        '<!doctype html><html><head><meta charset="utf-8"><title>Weekly</title></head>'
        '<body style="margin:0;padding:0;background:#f4f4f4"><table width="100%" cellpadding="0" '
        'cellspacing="0"><tr><td align="center"><table width="600" cellpadding="0" cellspacing="0" '
        'style="background:#ffffff"><tr><td style="padding:24px;font-family:Helvetica,Arial,'
        'sans-serif;font-size:22px">Hello {{ first_name }} {{ last_name }},</td></tr>'
        + "".join(items)
        + '<tr><td style="padding:24px;font-size:12px;color:#888888">You get this email as a '
        'member of {{ company | default("our list") }} in {{ city }}. <a href="https://www.example.com/'
        'preferences">Preferences</a> | <a href="{{ unsubscribe_url }}">Unsubscribe</a></td></tr>'
        '</table></td></tr></table></body></html>')
    text = ("Hello {{ first_name }},\n\nThis week's stories: https://www.example.com/news\n\n"
            "Unsubscribe: {{ unsubscribe_url }}\n")
    return "Weekly news for {{ first_name }}", text, html


def job(i: int, campaign: str) -> e.MessageJob:
    subject, text, html = newsletter()
    return e.MessageJob(
        message_id=str(uuid.uuid4()), campaign_id=campaign, workspace_id="ws-bench",
        channel=c.CHANNEL_EMAIL, attempt=1, sender="Herald Weekly <news@example.com>",
        to=f"reader{i:06d}@example.com", contact_id=f"ct-{i}", variant="A",
        fields={"first_name": f"Reader{i}", "last_name": "Example", "city": "Leeds",
                "company": "Example Ltd"},
        subject=subject, text=text, html=html)


async def preload(nats_url: str, n: int, campaign: str) -> None:
    nc = await bus.connect(nats_url)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    items = []
    for i in range(n):
        j = job(i, campaign)
        items.append((bus.SUBJECT_EMAIL_JOBS, j, f"{j.message_id}:1"))
    for k in range(0, n, 2000):
        await bus.publish_many(js, items[k:k + 2000], concurrency=256)
    await nc.close()


async def drained(nats_url: str, timeout: float) -> float:
    nc = await bus.connect(nats_url)
    js = nc.jetstream()
    t0 = time.perf_counter()
    try:
        while time.perf_counter() - t0 < timeout:
            try:
                info = await js.consumer_info(bus.JOBS_STREAM, "email")
                if info.num_pending == 0 and info.num_ack_pending == 0:
                    return time.perf_counter() - t0
            except Exception:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError("email jobs not drained in time")
    finally:
        await nc.close()


def sending_run(work: Path, nats_url: str, redis_url: str, n: int, smtp_port: int,
                pool: int, extra: dict[str, str], label: str,
                profile: Path | None = None, tree: str | None = None) -> tuple[float, Any]:
    # a fresh durable per run: delete the consumer so the previous run's state is gone
    asyncio.run(_reset_consumer(nats_url))
    asyncio.run(preload(nats_url, n, f"c-bench-{label}"))
    env = {"HERALD_NATS_URL": nats_url, "HERALD_REDIS_URL": redis_url,
           "HERALD_SMTP_HOST": "127.0.0.1", "HERALD_SMTP_PORT": str(smtp_port),
           "HERALD_SMTP_POOL_SIZE": str(pool), "HERALD_TRACKING_KEYS": KEY,
           "HERALD_TRACKING_RATE": "0", "HERALD_LOG_LEVEL": "WARNING", **extra}
    gw = start_gateway(f"email-gateway-{label}", work, env, tree)
    spy = _spy(gw.popen.pid, profile)
    try:
        cpu0, sys0, m0 = _cpu(gw.popen.pid), _cpu(gw.popen.pid, system=True), _machine()
        took = asyncio.run(drained(nats_url, 600))
        cpu, m1 = _cpu(gw.popen.pid) - cpu0, _machine()
        kernel = _cpu(gw.popen.pid, system=True) - sys0
    finally:
        _unspy(spy)
        gw.stop()
    LOAD[label] = (_load_text(m0, m1, took, cpu)
                   + f"; gateway kernel (system) time {kernel / n * 1e6:,.0f} µs/email")
    return took, cpu


LOAD: dict[str, str] = {}


def start_gateway(name: str, work: Path, env: dict[str, str], tree: str | None = None) -> procs.Proc:
    """The gateway from this checkout, or from another one (--email-ab-tree: e.g. a git
    worktree of the commit to compare with, gateway and shared both from there)."""
    if tree is None:
        return procs.start_module(name, "gateways.email", work, env)
    ready = work / f"{name}.ready"
    ready.unlink(missing_ok=True)
    log_path = work / f"{name}.log"
    code = (f"import sys, runpy; sys.path.insert(0, {tree!r}); "
            "runpy.run_module('gateways.email', run_name='__main__', alter_sys=True)")
    with open(log_path, "wb") as fh:
        popen = subprocess.Popen([sys.executable, "-c", code], stdout=fh, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, cwd=tree, start_new_session=True,
                                 env={**os.environ, **env, "HERALD_READY_FILE": str(ready)})
    return procs.wait_ready(procs.Proc(name, popen, log_path), ready, 60.0)


def _spy(pid: int, profile: Path | None) -> subprocess.Popen[bytes] | None:
    """py-spy on the gateway (it samples from outside, but pauses the process for each
    sample: figures of a profiled run are a little lower)."""
    spy_bin = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if profile is None or not spy_bin:
        return None
    return subprocess.Popen([spy_bin, "record", "--format", "raw", "-o", str(profile), "-r", "200",
                             "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _unspy(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is not None:
        spy.send_signal(2)
        spy.wait(30)


_AREAS = [
    ("redis-py", ("redis",)),
    ("compose", ("skeleton.py", "plaintpl.py", "links.py", "tokens.py")),
    ("SMTP client", ("smtp_pool.py", "smtp_session.py", "smtp_types.py")),
    ("tracking HTTP", ("aiohttp", "tracking.py")),
    ("NATS (fetch/publish/ack)", ("jsfast", "nats")),
    ("protobuf events", ("protobuf", "_pb2", "events.py")),
    ("metrics", ("prometheus",)),
]


def profile_summary(path: Path, top: int = 25) -> list[tuple[str, str, str]]:
    """Total time by area and own (leaf) time by function, from py-spy's raw output."""
    return pyspy.summarise(path, _AREAS, "other", top)


def _machine() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (/proc/stat)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = f[3] + f[4]
    return (sum(f) - idle) / tick, sum(f) / tick


def _load_text(m0: tuple[float, float], m1: tuple[float, float], wall: float, gw_cpu: float) -> str:
    """Machine load while measuring: everything else on the machine competes for the
    same cores, so a figure is only comparable with the load it was taken under."""
    busy = m1[0] - m0[0]
    cores = len(os.sched_getaffinity(0))
    return (f"machine {busy / wall:.2f} of {cores} cores busy (gateway {gw_cpu / wall:.2f}, "
            f"rest {(busy - gw_cpu) / wall:.2f}); loadavg {os.getloadavg()[0]:.2f}")


def _cpu(pid: int, system: bool = False) -> float:
    """CPU seconds (user + system; system only: the kernel's share) of a process so far:
    what the gateway itself spent, independent of what else runs on the machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    if system:
        return int(fields[12]) / os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _reset_consumer(nats_url: str) -> None:
    nc = await bus.connect(nats_url)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    try:
        await js.delete_consumer(bus.JOBS_STREAM, "email")
    except Exception:
        pass
    await js.purge_stream(bus.JOBS_STREAM)
    await nc.close()


# --- tracking load ---------------------------------------------------------------------

def wrk(url: str, seconds: int, conns: int) -> tuple[float, str]:
    out = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{seconds}s", "--latency", url],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"\s50%\s+(\S+)", out)
    p99 = re.search(r"\s99%\s+(\S+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    detail = f"p50 {p50.group(1) if p50 else '?'}, p99 {p99.group(1) if p99 else '?'}"
    if non2xx:
        detail += f", {non2xx.group(1)} non-2xx/3xx"
    return rps, detail


def tracking_runs(gateways: list[tuple[str, str, int]], seconds: int, conns: int,
                  repeat: int = 1, profile: Path | None = None) -> list[tuple[str, str, str]]:
    """gateways: (name, tracking url, pid); with several (A/B), runs alternate."""
    from gateways.email import tokens

    signer = tokens.Signer([KEY.encode()])
    mid = str(uuid.uuid4())
    pixel = signer.sign(tokens.Token(kind=tokens.OPEN, message_id=mid, campaign_id="c-bench"))
    click = signer.sign(tokens.Token(kind=tokens.CLICK, message_id=mid, link_index=0,
                                     url="https://www.example.com/news/1"))
    rows = []
    if shutil.which("wrk") is None:
        return [("tracking", "skipped", "wrk not installed (apt-get install wrk)")]
    prof_rows: list[tuple[str, str, str]] = []
    for route, path in (("open pixel", f"/o/{pixel}.gif"), ("click redirect", f"/c/{click}")):
        runs: dict[str, list[tuple[float, str, float, str]]] = {g[0]: [] for g in gateways}
        for k in range(max(repeat, 1) + (profile is not None)):  # a profiled run is extra
            for name, url, pid in gateways:
                spy = None
                if profile is not None and k == 0:
                    if name != gateways[-1][0]:
                        continue
                    spy = _spy(pid, profile.with_suffix(f".{route.split()[0]}.txt"))
                c0, m0, t0 = _cpu(pid), _machine(), time.perf_counter()
                rps, detail = wrk(url + path, seconds, conns)
                wall = time.perf_counter() - t0
                cpu = _cpu(pid) - c0
                _unspy(spy)
                if spy is not None:
                    prof = profile.with_suffix(f".{route.split()[0]}.txt")  # type: ignore[union-attr]
                    prof_rows.append((f"tracking {route} profiled (py-spy)", f"{rps:,.0f} req/s", ""))
                    prof_rows += profile_summary(prof, 15)
                    continue  # a profiled run is slower: not one of the figures
                runs[name].append((rps, detail, cpu / max(rps * seconds, 1),
                                   _load_text(m0, _machine(), wall, cpu)))
        for name, rs in runs.items():
            rs.sort(key=lambda r: r[0])
            med = rs[len(rs) // 2]
            label = f", {name}" if len(gateways) > 1 else ""
            rows.append((f"tracking {route} (wrk, {conns} conns, separate process{label})",
                         f"{med[0]:,.0f} req/s", f"median of {len(rs)}: {med[1]}; gateway CPU "
                         f"{med[2] * 1e6:,.0f} µs/request ({1 / med[2]:,.0f} req/s per core)"))
            for r in rs:
                rows.append(("  load while measuring", f"{r[0]:,.0f} req/s", f"{r[1]}; {r[3]}"))
    return rows + prof_rows


# --- where the time goes ---------------------------------------------------------------

async def stages(nats_url: str, redis_url: str, smtp_port: int, key_pem: bytes) -> list[tuple[str, str, str]]:
    from gateways.email import dedup, tokens
    from gateways.email.dkimsign import DkimSigner
    from gateways.email.skeleton import Skeletons
    from gateways.email.smtp_pool import QueuedMail, SmtpConfig, SmtpPool
    from gateways.email.worker import EmailWorker, WorkerConfig
    from shared import cache

    n = 2000
    jobs = [job(i, "c-stages") for i in range(n)]
    signer = tokens.Signer([KEY.encode()])
    rows = []
    pool = SmtpPool(SmtpConfig("127.0.0.1", smtp_port, timeout=10), 8)
    nc = await bus.connect(nats_url)
    js = nc.jetstream()
    redis = cache.connect(redis_url)
    markers = dedup.SendMarkers(redis, 3600)
    w = EmailWorker(js, markers, pool, Skeletons(signer, "https://t.example.com"), WorkerConfig())
    w.compose(jobs[0])
    t = time.process_time()
    composed = [w.compose(j) for j in jobs]
    per = (time.process_time() - t) / n
    rows.append(("  CPU: compose (render, 12 tracked links, MIME)", f"{per * 1e6:,.0f} µs/msg",
                 f"{len(composed[0].data):,} bytes per email"))
    for label, pem in (("RSA-2048", key_pem), ("Ed25519", _ed25519_pem())):
        w.dkim = DkimSigner("example.com", "bench", pem)
        w.dkim_by_domain.clear()  # per-From-domain copies of the previous key
        t = time.process_time()
        for j in jobs[:300]:
            w.compose(j)
        rows.append((f"  CPU: compose + DKIM {label}", f"{(time.process_time() - t) / 300 * 1e6:,.0f} µs/msg", ""))
    w.dkim = None
    t = time.process_time()
    wall = time.perf_counter()
    await pool.send_many([QueuedMail(x.mail_from, x.rcpt, x.data) for x in composed])
    rows.append(("  CPU: SMTP transaction (pipelined, 8 connections)",
                 f"{(time.process_time() - t) / n * 1e6:,.0f} µs/msg",
                 f"{n / (time.perf_counter() - wall):,.0f} msg/s alone"))
    await pool.close()
    t = time.process_time()
    for k in range(0, n, 128):
        chunk = jobs[k:k + 128]
        await markers.claim_many([(j.message_id, 1, {"to": j.to}) for j in chunk])
        await markers.set_many([(j.message_id, 1, "submitted", {"p": "x"}) for j in chunk])
    rows.append(("  CPU: Redis claim + record (batches of 128)",
                 f"{(time.process_time() - t) / n * 1e6:,.0f} µs/msg", ""))
    await w.publisher.start()
    from gateways.email import outcomes
    t = time.process_time()
    for k in range(0, n, 128):  # as the worker does: build the events, publish a batch
        evs = []
        for j in jobs[k:k + 128]:
            ev = w.event(j, outcomes.submitted("<x>"), j.message_id)
            evs.append(("events.message.submitted", ev.SerializeToString(), f"stage-{j.message_id}"))
        await w.publisher.publish_many(evs)
    rows.append(("  CPU: outcome event build + publish (batches of 128, one future each)",
                 f"{(time.process_time() - t) / n * 1e6:,.0f} µs/msg", ""))
    await redis.aclose()
    await nc.close()
    return rows


def _ed25519_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _rsa_pem() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    return rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


# --- entry point -----------------------------------------------------------------------

def run(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    n, pool = args.email_jobs, args.email_pool
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        nats = procs.start_nats(work / "nats")
        redis = procs.start_redis(work / "redis")
        sink, port = start_fast_sink(work)
        try:
            nats_url, redis_url = str(nats.info["url"]), str(redis.info["url"])
            # Repeated: other work on the machine moves single runs by +-30 %; the median
            # is reported with the spread and the load of every run. Variants (--email-consumer
            # both, --email-ab-tree) run alternately, so each sees the same machine conditions.
            variants: list[tuple[str, dict[str, str], str | None]] = [
                (f"consumer {kind}", {"HERALD_EMAIL_CONSUMER": kind}, None)
                for kind in (["nats", "jsfast"] if args.email_consumer == "both"
                             else [args.email_consumer])]
            if args.email_ab_tree:
                variants = [(f"{name}, {tree_name}", env, tree)
                            for name, env, _ in variants
                            for tree_name, tree in ((f"tree {args.email_ab_tree}", args.email_ab_tree),
                                                    ("this tree", None))]
            all_runs: dict[str, list[tuple[float, float, str]]] = {v[0]: [] for v in variants}
            profiled = False
            for k in range(max(args.email_repeat, 1) if "send" in args.email_parts else 0):
                for vi, (name, env, tree) in enumerate(variants):
                    label = f"plain-{vi}-{k}"
                    prof = None
                    if args.email_profile and not profiled and tree is None:
                        prof, profiled = work / "send-profile.txt", True
                    took, cpu = sending_run(work, nats_url, redis_url, n, port, pool, env, label,
                                            prof, tree)
                    all_runs[name].append((n / took, cpu / n, LOAD[label]))
                    if prof is not None and prof.exists():
                        keep = ROOT / "bench" / "results" / f"email-send-profile-{int(time.time())}.txt"
                        keep.parent.mkdir(exist_ok=True)
                        shutil.copy(prof, keep)
                        profile_rows = [("send run profiled (py-spy, that run's figure is lower)",
                                         f"{n / took:,.0f} msg/s", str(keep.relative_to(ROOT)))]
                        profile_rows += profile_summary(prof)
            for name, runs in all_runs.items():
                if not runs:
                    continue
                rates = sorted(r[0] for r in runs)
                cpus = sorted(r[1] for r in runs)
                rate, per = statistics.median(rates), statistics.median(cpus)
                rows.append((f"emails/s, one gateway -> fast sink ({n:,} jobs pre-loaded, pool {pool}, "
                             f"{name})",
                             f"{rate:,.0f} msg/s",
                             f"median of {len(runs)} (runs {', '.join(f'{r:,.0f}' for r in rates)}); "
                             "8 KB HTML, 12 tracked links, VERP, no DKIM"))
                rows.append(("  gateway CPU per email (-> emails/s per fully used core)",
                             f"{per * 1e6:,.0f} µs", f"{1 / per:,.0f} msg/s per core (runs "
                             f"{', '.join(f'{c * 1e6:,.0f}' for c in cpus)} µs)"))
                for r in runs:
                    rows.append(("  load while sending", f"{r[0]:,.0f} msg/s", r[2]))
            if profiled:
                rows.extend(profile_rows)
            key_pem = _rsa_pem()
            if args.email_dkim and "send" in args.email_parts:
                key_file = work / "dkim.pem"
                key_file.write_bytes(key_pem)
                m = max(n // 4, 1000)
                took, cpu = sending_run(work, nats_url, redis_url, m, port, pool,
                                        {"HERALD_DKIM_KEY_FILE": str(key_file)}, "dkim")
                rows.append(("emails/s with DKIM RSA-2048", f"{m / took:,.0f} msg/s",
                             f"{m:,} jobs; {m / cpu:,.0f} msg/s per core"))
                ed_file = work / "dkim-ed.pem"
                ed_file.write_bytes(_ed25519_pem())
                took, cpu = sending_run(work, nats_url, redis_url, m, port, pool,
                                        {"HERALD_DKIM_KEY_FILE": str(ed_file)}, "dkim-ed")
                rows.append(("emails/s with DKIM Ed25519", f"{m / took:,.0f} msg/s",
                             f"{m:,} jobs; {m / cpu:,.0f} msg/s per core"))
            if args.email_aiosmtpd and "send" in args.email_parts:
                m = max(n // 4, 1000)
                aio = procs.start_module("email-sink", "gateways.email.sink", work,
                                         {"HERALD_SINK_DIR": str(work / "mail")})
                try:
                    took, _ = sending_run(work, nats_url, redis_url, m, int(aio.info["smtp_port"]),
                                          pool, {}, "aiosmtpd")
                finally:
                    aio.stop()
                rows.append(("emails/s to the aiosmtpd dev sink (.eml files)", f"{m / took:,.0f} msg/s",
                             f"{m:,} jobs; the sink process is the limit here"))
            # tracking: gateways with nothing to send (with --email-ab-tree one per tree)
            if "track" in args.email_parts:
                asyncio.run(_reset_consumer(nats_url))
                trees: list[tuple[str, str | None]] = [("this tree", None)]
                if args.email_ab_tree:
                    trees.insert(0, (f"tree {args.email_ab_tree}", args.email_ab_tree))
                gws = []
                try:
                    for ti, (tname, tree) in enumerate(trees):
                        gw = start_gateway(f"email-gateway-tracking{ti}", work, {
                            "HERALD_NATS_URL": nats_url, "HERALD_REDIS_URL": redis_url,
                            "HERALD_SMTP_HOST": "127.0.0.1", "HERALD_SMTP_PORT": str(port),
                            "HERALD_TRACKING_KEYS": KEY, "HERALD_TRACKING_RATE": "0",
                            "HERALD_LOG_LEVEL": "WARNING"}, tree)
                        gws.append((tname, gw))
                    rows.extend(tracking_runs(
                        [(tname, str(gw.info["tracking_url"]), gw.popen.pid) for tname, gw in gws],
                        args.email_track_seconds, args.email_track_conns, args.email_repeat,
                        work / "track-profile.txt" if args.email_profile else None))
                finally:
                    for _, gw in gws:
                        gw.stop()
            if "stages" in args.email_parts:
                rows.extend(asyncio.run(stages(nats_url, redis_url, port, key_pem)))
        finally:
            sink.kill()
            sink.wait()
            redis.stop()
            nats.stop()
    rows.append(("machine", f"{len(os.sched_getaffinity(0))} cores",
                 "gateway, sink, nats-server, redis and the load generator share them"))
    return rows


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--email-jobs", type=int, default=20000, help="email: jobs pre-loaded")
    ap.add_argument("--email-pool", type=int, default=16, help="email: SMTP connections")
    ap.add_argument("--email-dkim", action=argparse.BooleanOptionalAction, default=True,
                    help="email: also measure with DKIM (RSA-2048, Ed25519)")
    ap.add_argument("--email-aiosmtpd", action=argparse.BooleanOptionalAction, default=True,
                    help="email: also measure against the aiosmtpd dev sink")
    ap.add_argument("--email-repeat", type=int, default=3,
                    help="email: runs of the plain send and of each tracking route (median reported)")
    ap.add_argument("--email-consumer", choices=["jsfast", "nats", "both"], default="jsfast",
                    help="email: JetStream consumer of the gateway (both: alternating runs)")
    ap.add_argument("--email-track-seconds", type=int, default=8, help="email: wrk duration")
    ap.add_argument("--email-track-conns", type=int, default=64, help="email: wrk connections")
    ap.add_argument("--email-parts", type=lambda v: set(v.split(",")), default={"send", "track", "stages"},
                    help="email: comma-separated parts to run: send,track,stages (default all)")
    ap.add_argument("--email-profile", action="store_true",
                    help="email: py-spy one send run and one run per tracking route (summary "
                         "rows; raw stacks of the send run kept in bench/results)")
    ap.add_argument("--email-ab-tree", default="",
                    help="email: another checkout (e.g. `git worktree add /tmp/base HEAD~1`) whose "
                         "gateway runs alternately with this tree's, same machine conditions")
