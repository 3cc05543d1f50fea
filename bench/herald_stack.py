"""The whole local Herald stack (cli.devstack.Stack) for the benches, on SQLite or on a
throwaway PostgreSQL database (there with one or more campaigns processes), with the SMSC
simulator's counters in a file, and the client-side steps the benches share: contacts into a
category through the API, an SMS campaign to that category approved and followed until every
message is DELIVERED in stats.

Phone numbers: +44 7700 900xxx has only 1,000 numbers and the audience is de-duplicated by
address, so the benches use +44 4000 000000-999999 (the UK's 04 range is unallocated, so
never a real number), accepted through HERALD_RECIPIENTS_TEST_NUMBERS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2 as rpb
from herald.v1 import stats_pb2 as spb

from cli import demo, procs
from cli.devstack import Stack

MAX_CONTACTS = 1_000_000
TEST_NUMBERS = r"^\+44(7700900\d{3}|4000\d{6})$"
PG_ADMIN_DSN = os.environ.get("HERALD_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
MD = demo.WORKSPACE


def phone(i: int) -> str:
    if not 0 <= i < MAX_CONTACTS:
        raise ValueError(f"the bench numbers are +44 4000 000000-999999: at most {MAX_CONTACTS:,} contacts")
    return f"+444000{i:06d}"


# --- a throwaway PostgreSQL database per service -------------------------------------------

async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def pg_databases(services: tuple[str, ...] = ("campaigns", "recipients")) -> Iterator[tuple[str, set[str]]]:
    """(HERALD_DB_URL with {service}, database names): created now, dropped afterwards."""
    prefix = f"herald_bench_{uuid.uuid4().hex[:8]}"
    names = {f"{prefix}_{s}" for s in services}
    for n in names:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{n}"'))
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{prefix}_{{service}}", names
    finally:
        for n in names:
            with contextlib.suppress(Exception):
                asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)'))


# --- the stack ------------------------------------------------------------------------------

@dataclass
class Running:
    stack: Stack
    db: str                 # "sqlite" or "postgres"
    pg_names: set[str]      # the PostgreSQL databases (their backends are watched too)
    smsc_stats: Path        # the simulator's counters (JSON, rewritten every 50 ms)

    def pids(self) -> dict[str, int]:
        """Herald's processes and the servers it runs on (the simulator is not Herald)."""
        return {("simulator" if k == "smsc-simulator" else k): v for k, v in self.stack.pids().items()}

    def smsc(self) -> dict[str, Any]:
        try:
            return json.loads(self.smsc_stats.read_text())
        except (OSError, ValueError):
            return {}

    def clients(self, campaigns: str = "campaigns") -> demo.Clients:
        """API clients; `campaigns` names the campaigns replica the campaign calls go to."""
        s = self.stack
        return demo.Clients.connect(s.addr(campaigns), s.addr("recipients"), s.addr("stats"))

    def campaigns_replicas(self) -> list[str]:
        """The campaigns processes' names: "campaigns", then "campaigns-2"..."""
        return [k for k in self.stack.procs if k == "campaigns" or k.startswith("campaigns-")]

    def campaigns_db(self) -> str:
        """The campaigns service's PostgreSQL database (asyncpg DSN); "" on SQLite."""
        name = next((n for n in self.pg_names if n.endswith("_campaigns")), "")
        return f"{PG_ADMIN_DSN.rsplit('/', 1)[0]}/{name}" if name else ""


def simulator_env(receipt_delay: float, stats_file: Path) -> dict[str, str]:
    """The simulator's settings, the same for Herald and for Kannel."""
    return {"HERALD_SMPP_SIM_RECEIPT_DELAY": str(receipt_delay), "HERALD_SMPP_SIM_STATS_FILE": str(stats_file),
            "HERALD_SMPP_SIM_ID_STYLE": "hex", "HERALD_LOG_LEVEL": "WARNING"}


def add_campaigns_replicas(stack: Stack, total: int) -> None:
    """Start more campaigns processes ("campaigns-2"...) with the first one's settings, on
    the same database, NATS and Redis: replicas as a Deployment would run them. They are
    started after the first, which has migrated the database, and stopped before it."""
    module, env = stack.modules["campaigns"]
    for i in range(2, total + 1):
        name = f"campaigns-{i}"
        stack.procs[name] = procs.start_module(
            name, module, stack.workdir, {**stack.env(), **env, **stack.module_env.get("campaigns", {})})


@contextlib.contextmanager
def herald(db: str, receipt_delay: float = 0.01, env: dict[str, str] | None = None,
           campaigns_replicas: int = 1) -> Iterator[Running]:
    """The stack, with `campaigns_replicas` campaigns processes (more than one on PostgreSQL
    only: SQLite has a single writer)."""
    if campaigns_replicas > 1 and db != "postgres":
        raise ValueError(f"{campaigns_replicas} campaigns replicas need PostgreSQL: SQLite has a "
                         "single writer, so the campaigns service runs one replica on it")
    with contextlib.ExitStack() as es:
        work = Path(es.enter_context(tempfile.TemporaryDirectory(prefix="herald-bench-")))
        url, names = None, set()
        if db == "postgres":
            url, names = es.enter_context(pg_databases())
        elif db != "sqlite":
            raise ValueError(f"unknown database {db!r} (sqlite or postgres)")
        stats_file = work / "smsc.json"
        stack = Stack(work / "stack", db_url=url,
                      extra_env={"HERALD_RECIPIENTS_TEST_NUMBERS": TEST_NUMBERS, **(env or {})},
                      module_env={"smsc-simulator": simulator_env(receipt_delay, stats_file)})
        stack.start()
        es.callback(stack.stop)
        add_campaigns_replicas(stack, campaigns_replicas)
        yield Running(stack, db, names, stats_file)


# --- client steps ---------------------------------------------------------------------------

def _streaming_import() -> str:
    """The name of a client-streaming contact import RPC, when the API has one."""
    svc = rpb.DESCRIPTOR.services_by_name["RecipientService"]
    for m in svc.methods:
        if m.client_streaming and not m.server_streaming and "Import" in m.name:
            return m.name
    return ""


def _contacts(start: int, stop: int, category: str) -> list[rpb.Contact]:
    return [rpb.Contact(phone=phone(i), first_name=f"Bench{i}", external_id=f"bench-{i}",
                        category_ids=[category]) for i in range(start, stop)]


async def import_contacts(cl: demo.Clients, n: int, batch: int = 5000, concurrency: int = 2,
                          category_name: str = "", first: int = 0) -> tuple[str, float, str]:
    """n contacts (numbers first..first+n-1) into a new category. Returns (category id,
    seconds, how they were sent)."""
    cat = await cl.recipients.CreateCategory(
        rpb.CreateCategoryRequest(name=category_name or f"bench-{uuid.uuid4().hex[:8]}"), metadata=MD)
    t0 = time.perf_counter()
    name = _streaming_import()
    if name:
        how = await _import_streaming(cl, name, range(first, first + n), batch, cat.id)
    else:
        how = await _import_batches(cl, range(first, first + n), batch, concurrency, cat.id)
    return cat.id, time.perf_counter() - t0, how


async def _import_batches(cl: demo.Clients, span: range, batch: int, concurrency: int, cat: str) -> str:
    sem = asyncio.Semaphore(concurrency)

    async def one(k: int) -> None:
        async with sem:
            resp = await cl.recipients.UpsertContacts(rpb.UpsertContactsRequest(
                request_id=f"bench-import-{cat}-{k}", contacts=_contacts(k, min(span.stop, k + batch), cat)),
                metadata=MD, timeout=600)
            if resp.rejected:
                errs = [r.error for r in resp.results if r.error][:3]
                raise RuntimeError(f"contacts rejected: {errs}")

    await asyncio.gather(*(one(k) for k in range(span.start, span.stop, batch)))
    return f"UpsertContacts, batches of {batch:,}, {concurrency} in flight"


async def _import_streaming(cl: demo.Clients, method: str, span: range, batch: int, cat: str) -> str:
    """RecipientService.ImportContacts: options first, then chunks of contacts with their
    line numbers, one client stream."""
    async def requests() -> AsyncIterator[rpb.ImportContactsRequest]:
        yield rpb.ImportContactsRequest(options=rpb.ImportContactsOptions(
            request_id=f"bench-import-{cat}", categories=[cat]))
        for k in range(span.start, span.stop, batch):
            stop = min(span.stop, k + batch)
            yield rpb.ImportContactsRequest(contacts=_contacts(k, stop, cat),
                                            lines=list(range(k - span.start + 2, stop - span.start + 2)))

    resp = await getattr(cl.recipients, method)(requests(), metadata=MD, timeout=3600)
    if resp.rejected:
        raise RuntimeError(f"contacts rejected: {list(resp.errors)[:3]}")
    return f"{method} (one client stream, chunks of {batch:,})"


async def sms_campaign(cl: demo.Clients, category: str, name: str = "bench") -> str:
    cp = await cl.campaigns.CreateCampaign(cpb.CreateCampaignRequest(
        request_id=f"bench-{uuid.uuid4().hex}",
        campaign=cpb.Campaign(name=name, channel=c.CHANNEL_SMS, sender="HERALD", auto_start=True,
                              category_ids=[category],
                              content=cpb.Content(text="Hi {{ first_name }}, your code is 1234."))),
        metadata=MD)
    return str(cp.id)


@dataclass
class CampaignRun:
    campaign_id: str
    seconds: float          # approve -> every message DELIVERED in stats
    to_done: float          # approve -> campaign DONE (GetCampaign)
    phases: dict[str, float]  # time in each state, from the campaign's history
    tail: float             # DONE -> every message DELIVERED in stats
    acked: float            # approve -> the simulator had every receipt acknowledged (0: not watched)
    stats: spb.CampaignStats
    campaign: cpb.Campaign


async def approve_and_follow(cl: demo.Clients, campaign_id: str, n: int, poll: float = 0.1,
                             receipts_acked: Callable[[], int] | None = None,
                             status_poll: float = 1.0) -> CampaignRun:
    """Approve the campaign and wait until GetCampaignStats shows n DELIVERED (and, given
    receipts_acked, note when the SMSC had its n-th receipt acknowledged).

    GetCampaign reads the campaign's whole ledger (its progress): polled every `poll`
    seconds it cost the campaigns service more than its own work per message at 100,000
    recipients. It is asked every `status_poll` seconds until the stats show n delivered,
    then every `poll` seconds, so the end of the run is seen as precisely (only "DONE
    after" is coarser when DONE comes first)."""
    timeout = max(300.0, n / 50)
    t0 = time.perf_counter()
    await cl.campaigns.ApproveCampaign(cpb.CampaignActionRequest(id=campaign_id, note="bench"), metadata=MD)
    deadline = t0 + timeout
    t_done = t_acked = asked = 0.0
    delivered = 0
    cp = None
    while True:
        now = time.perf_counter()
        if receipts_acked is not None and not t_acked and receipts_acked() >= n:
            t_acked = now - t0
        if not t_done and (delivered >= n or now - asked >= status_poll):
            asked = now
            cp = await cl.campaigns.GetCampaign(cpb.GetCampaignRequest(id=campaign_id), metadata=MD)
            if cp.status in demo.TERMINAL:
                t_done = time.perf_counter() - t0
                if cp.status != cpb.CAMPAIGN_STATUS_DONE:
                    raise RuntimeError(f"campaign ended {cpb.CampaignStatus.Name(cp.status)}: {cp.status_reason}")
        st = await cl.stats.GetCampaignStats(spb.GetCampaignStatsRequest(campaign_id=campaign_id), metadata=MD)
        delivered = st.delivered
        if t_done and st.delivered >= n:
            seconds = time.perf_counter() - t0
            break
        if now > deadline:
            raise TimeoutError(f"campaign {campaign_id}: {st.delivered:,}/{n:,} delivered after {timeout:.0f} s "
                               f"({cpb.CampaignStatus.Name(cp.status) if cp else '?'})")
        await asyncio.sleep(poll)
    assert cp is not None
    return CampaignRun(campaign_id, seconds, t_done, phases(cp), seconds - t_done, t_acked or seconds, st, cp)


def phases(cp: cpb.Campaign) -> dict[str, float]:
    """Seconds spent in each state, from the campaign's state history."""
    out: dict[str, float] = {}
    hist = list(cp.history)
    for a, b in zip(hist, hist[1:], strict=False):
        name = cpb.CampaignStatus.Name(a.status).removeprefix("CAMPAIGN_STATUS_")
        out[name] = out.get(name, 0.0) + (b.at.ToNanoseconds() - a.at.ToNanoseconds()) / 1e9
    return out
