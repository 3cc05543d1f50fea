"""Fault injectors shared by the chaos tests: each waits for its moment in the campaign,
breaks one thing, heals it and answers the monotonic time it healed."""

from __future__ import annotations

import asyncio
import time

from herald.v1 import campaigns_pb2 as cpb

from tests.chaos.harness import ChaosStack


async def kill_then_start(cs: ChaosStack, name: str, down: float = 1.0) -> float:
    """kill -9 `name`, leave it down `down` seconds, start it on the same ports."""
    cs.stack.kill(name)
    await asyncio.sleep(down)
    await asyncio.to_thread(cs.stack.start_one, name)
    return time.monotonic()


async def outage(cs: ChaosStack, name: str, down: float, hard: bool = False) -> float:
    """Stop `name` (SIGTERM, or kill -9 when hard) for `down` seconds, then start it again on
    the same port with the same data (JetStream store, Redis append-only file)."""
    if hard:
        cs.stack.kill(name)
    else:
        await asyncio.to_thread(cs.stack.stop_one, name)
    await asyncio.sleep(down)
    await asyncio.to_thread(cs.stack.start_one, name)
    return time.monotonic()


async def mid_sending(cs: ChaosStack, campaign_id: str, fraction: float = 0.3) -> cpb.Campaign:
    return await cs.wait_processed(campaign_id, fraction)


_BEFORE = (cpb.CAMPAIGN_STATUS_NEW, cpb.CAMPAIGN_STATUS_PENDING, cpb.CAMPAIGN_STATUS_DRAFT)


async def at_building(cs: ChaosStack, campaign_id: str, written: bool = False) -> str:
    """Wait for the campaign to be BUILDING (or past it, if the build beat the poll); with
    `written`, until the ledger already holds its messages while the campaign is still
    BUILDING (the last step: audience written, targets cleared, not yet SENDING). Answer
    what was seen."""
    def probe(cp: cpb.Campaign) -> bool:
        if cp.status in _BEFORE:
            return False
        return not written or cp.status != cpb.CAMPAIGN_STATUS_BUILDING or cp.progress.total > 0

    cp = await cs.wait_until(campaign_id, probe, "BUILDING", step=0.003)
    return (cpb.CampaignStatus.Name(cp.status).removeprefix("CAMPAIGN_STATUS_")
            + f" with {cp.progress.total} ledger rows")
