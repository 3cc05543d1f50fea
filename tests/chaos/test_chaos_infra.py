"""NATS and Redis restarts and outages mid-campaign (same port, same data: the JetStream
store and Redis's append-only file, fsynced every second, as production runs them)."""

from __future__ import annotations

import asyncio
import shutil
import time

import pytest
from herald.v1 import common_pb2 as c

from tests.chaos import faults
from tests.chaos.harness import SMPP_WINDOW, ChaosStack, check, run_fault

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1800)]


async def test_nats_restart(cs: ChaosStack) -> None:
    async def inject(cid: str) -> float:
        await faults.mid_sending(cs, cid, 0.3)
        return await faults.outage(cs, "nats", 0.0)

    check(await run_fault(cs, "NATS restart", c.CHANNEL_SMS, inject), cs)


async def test_nats_outage(cs: ChaosStack) -> None:
    async def inject(cid: str) -> float:
        await faults.mid_sending(cs, cid, 0.3)
        return await faults.outage(cs, "nats", cs.scale.outage, hard=True)

    check(await run_fault(cs, f"NATS outage {cs.scale.outage:.0f}s (kill -9)", c.CHANNEL_SMS, inject), cs)


async def test_redis_restart(cs: ChaosStack) -> None:
    async def inject(cid: str) -> float:
        await faults.mid_sending(cs, cid, 0.3)
        return await faults.outage(cs, "redis", 0.0)

    check(await run_fault(cs, "Redis restart", c.CHANNEL_SMS, inject), cs)


async def test_redis_outage(cs: ChaosStack) -> None:
    async def inject(cid: str) -> float:
        await faults.mid_sending(cs, cid, 0.3)
        return await faults.outage(cs, "redis", cs.scale.outage, hard=True)

    # The gateway keeps retrying to record the answers it got (HERALD_SMPP_RECORD_RETRY_FOR,
    # longer than the outage): none of them may end ABANDONED for want of Redis.
    check(await run_fault(cs, f"Redis outage {cs.scale.outage:.0f}s (kill -9)", c.CHANNEL_SMS, inject), cs,
          abandoned_tolerance=0)


async def test_redis_outage_email(cs: ChaosStack) -> None:
    async def inject(cid: str) -> float:
        await faults.mid_sending(cs, cid, 0.3)
        return await faults.outage(cs, "redis", cs.scale.outage, hard=True)

    check(await run_fault(cs, f"Redis outage {cs.scale.outage:.0f}s email", c.CHANNEL_EMAIL, inject), cs)


async def test_redis_data_loss(cs: ChaosStack) -> None:
    async def inject(cid: str) -> float:
        await faults.mid_sending(cs, cid, 0.3)
        # Redis dies and comes back empty (its append-only file lost): the maps and send markers
        # are gone; receipts must still match, nothing may be sent twice.
        cs.stack.kill("redis")
        for path in (cs.stack.workdir / "redis").iterdir():
            if path.name.startswith(("appendonly", "dump")):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        await asyncio.to_thread(cs.stack.start_one, "redis")
        return time.monotonic()

    # The stats counters lived in Redis: ReconcileCampaign(repair) rebuilds them from the ledger.
    # With the send markers gone, a redelivered job claimed before the loss cannot be told
    # from one that was written: it is ABANDONED, never resent (redis_lost). That costs at
    # most the gateway's in-flight jobs (4x the window), the price of never sending twice.
    check(await run_fault(cs, "Redis data lost (kill -9)", c.CHANNEL_SMS, inject, repair=True), cs,
          unsent_tolerance=4 * SMPP_WINDOW)
