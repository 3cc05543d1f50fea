"""kill -9 of each Herald service mid-campaign (campaigns during BUILDING and during SENDING,
recipients, stats): every message final, once, stats equal to the ledger."""

from __future__ import annotations

import pytest
from herald.v1 import common_pb2 as c

from tests.chaos import faults
from tests.chaos.harness import ChaosStack, check, run_fault

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1800)]


async def test_kill_campaigns_during_building(cs: ChaosStack) -> None:
    seen = {}

    async def inject(cid: str) -> float:
        # Late in the build: ledger rows written, campaign still BUILDING (where a crash once lost
        # the whole inline audience); the state seen is stated in the line.
        seen["at"] = await faults.at_building(cs, cid, written=True)
        return await faults.kill_then_start(cs, "campaigns")

    out = await run_fault(cs, "kill -9 campaigns BUILDING", c.CHANNEL_SMS, inject)
    out.notes.append(f"killed at {seen.get('at')}")
    check(out, cs)


async def test_kill_campaigns_during_building_category(cs: ChaosStack) -> None:
    seen = {}

    async def inject(cid: str) -> float:
        seen["at"] = await faults.at_building(cs, cid)
        return await faults.kill_then_start(cs, "campaigns")

    out = await run_fault(cs, "kill -9 campaigns BUILD cat", c.CHANNEL_SMS, inject, category=True)
    out.notes.append(f"killed at {seen.get('at')}")
    check(out, cs)


async def test_kill_campaigns_during_sending(cs: ChaosStack) -> None:
    async def inject(cid: str) -> float:
        await faults.mid_sending(cs, cid, 0.3)
        return await faults.kill_then_start(cs, "campaigns")

    check(await run_fault(cs, "kill -9 campaigns SENDING", c.CHANNEL_SMS, inject), cs)


async def test_kill_recipients(cs: ChaosStack) -> None:
    async def inject(cid: str) -> float:
        # The build reads the category's contacts from recipients: kill it then.
        await faults.at_building(cs, cid)
        return await faults.kill_then_start(cs, "recipients")

    check(await run_fault(cs, "kill -9 recipients", c.CHANNEL_SMS, inject, category=True), cs)


async def test_kill_stats(cs: ChaosStack) -> None:
    async def inject(cid: str) -> float:
        await faults.mid_sending(cs, cid, 0.3)
        return await faults.kill_then_start(cs, "stats")

    check(await run_fault(cs, "kill -9 stats", c.CHANNEL_SMS, inject), cs)
