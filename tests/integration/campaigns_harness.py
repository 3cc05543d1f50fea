"""In-process CampaignService + scheduler over real gRPC, real SQL (SQLite or PostgreSQL),
a private NATS and the real recipients service as a process; time is a FakeClock."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from herald.v1 import campaigns_pb2 as pb
from herald.v1 import campaigns_pb2_grpc as pb_grpc
from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2_grpc as rgrpc
from nats.aio.client import Client as NATS
from sqlalchemy.ext.asyncio import AsyncEngine

from cli import procs
from services.campaigns.scheduler import Scheduler
from services.campaigns.servicer import CampaignServicer
from services.campaigns.store import Store
from shared import bus, db
from shared.grpc_server import ServiceRuntime
from shared.timeutil import Clock

MIGRATIONS = os.path.join(os.path.dirname(__file__), "../../services/campaigns/migrations")


class FakeClock(Clock):
    def __init__(self, start: datetime) -> None:
        self.t = start

    def now(self) -> datetime:
        return self.t

    def time(self) -> float:
        return self.t.timestamp()

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)

    def set(self, when: datetime) -> None:
        self.t = when


@dataclass
class Harness:
    stub: pb_grpc.CampaignServiceStub
    scheduler: Scheduler
    store: Store
    clock: FakeClock
    engine: AsyncEngine
    nc: NATS
    runtime: ServiceRuntime
    channels: list[grpc.aio.Channel]

    async def close(self) -> None:
        for ch in self.channels:
            await ch.close()
        await self.runtime.shutdown(0)
        await self.nc.close()
        await self.engine.dispose()

    async def ticks(self, seconds: float, step: float = 0.2) -> list[tuple[datetime, int]]:
        """Advance time in scheduler-interval steps, ticking each time; returns the
        (time, jobs dispatched) of each tick that dispatched."""
        out = []
        for _ in range(round(seconds / step)):
            self.clock.advance(step)
            n = await tick(self.scheduler)
            if n:
                out.append((self.clock.now(), n))
        return out

    async def dispatched(self) -> int:
        from sqlalchemy import func, select

        from services.campaigns.schema import messages
        async with self.engine.connect() as conn:
            return (await conn.execute(select(func.count()).select_from(messages).where(
                messages.c.dispatched_at.is_not(None)))).scalar_one()

    async def status(self, cid: str, md: tuple) -> pb.Campaign:
        return await self.stub.GetCampaign(pb.GetCampaignRequest(id=cid), metadata=md)


async def tick(scheduler: Scheduler) -> int:
    """One scheduler tick, then the builds it started (they run beside the ticks) to their
    end: the tests' clock stands still while they run."""
    n = await scheduler.tick()
    await scheduler.builds_settled()
    return n


async def start_harness(db_url: str, nats_url: str, recipients_addr: str,
                        start: datetime | None = None) -> Harness:
    await db.migrate(MIGRATIONS, db_url)
    engine = db.make_engine(db_url)
    clock = FakeClock(start or datetime(2026, 1, 10, 12, 0, tzinfo=UTC))
    nc = await bus.connect(nats_url)
    js = nc.jetstream()
    await bus.ensure_streams(js)
    rch = grpc.aio.insecure_channel(recipients_addr)
    recipients = rgrpc.RecipientServiceStub(rch)
    store = Store(engine)
    sched = Scheduler(store, js, recipients, clock=clock, batch=500, max_payload=nc.max_payload)
    servicer = CampaignServicer(store, clock=clock, on_cancel=sched.cancel_queued,
                                recipients=recipients, js=js, on_trigger=sched.wake.set)
    rt = ServiceRuntime("campaigns-test")
    port = await rt.start_grpc([(pb_grpc.add_CampaignServiceServicer_to_server, servicer,
                                 "herald.v1.CampaignService")])
    ch = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return Harness(pb_grpc.CampaignServiceStub(ch), sched, store, clock, engine, nc, rt, [ch, rch])


def start_recipients(workdir: Path, nats_url: str) -> procs.Proc:
    return procs.start_module("recipients", "services.recipients", workdir, {
        "HERALD_DB_URL": f"sqlite+aiosqlite:///{workdir}/recipients.db",
        "HERALD_NATS_URL": nats_url, "HERALD_GRPC_ADDR": "127.0.0.1:0",
        "HERALD_METRICS_ADDR": "127.0.0.1:0",
        # Development mode: a sender is registered to the first workspace that uses it.
        "HERALD_DEV_MODE": "1"})


_senders = itertools.count(1)


def new_sender() -> str:
    """A sender no other workspace holds yet (senders belong to the first workspace that uses
    them in development mode, and the recipients process lives for the whole session)."""
    return f"H{next(_senders):07d}"


def sms(n: int, request_id: str = "", draft: bool = False, **campaign: object) -> pb.CreateCampaignRequest:
    return pb.CreateCampaignRequest(
        request_id=request_id, draft=draft,
        campaign=pb.Campaign(**{"name": "t", "channel": c.CHANNEL_SMS, "sender": new_sender(),
                                "content": pb.Content(text="hello"), **campaign}),
        recipients=[c.Recipient(phone=f"+447700900{i:03d}") for i in range(n)])
