"""Carrier-side faults: the SMSC dropping the connection (a submit left unanswered) and dying
(receipts it owed lost) before coming back; duplicated receipts; an SMTP relay answering
4xx."""

from __future__ import annotations

import asyncio
import time

import pytest
from herald.v1 import common_pb2 as c

from tests.chaos import faults
from tests.chaos.harness import ChaosStack, check, run_fault

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1800)]


async def test_smsc_drops_and_dies(cs: ChaosStack) -> None:
    notes = {}

    async def inject(cid: str) -> float:
        await faults.mid_sending(cs, cid, 0.25)
        # Drop: the simulator closes every ESME connection abruptly and comes straight back.
        await asyncio.to_thread(cs.stop_smsc)
        await asyncio.to_thread(cs.start_smsc)
        await faults.mid_sending(cs, cid, 0.6)
        # Death: down for the outage; receipts it still owed are gone with it.
        await asyncio.to_thread(cs.stop_smsc)
        await asyncio.sleep(cs.scale.outage)
        await asyncio.to_thread(cs.start_smsc)
        notes["down"] = cs.scale.outage
        return time.monotonic()

    out = await run_fault(cs, "SMSC drop + death", c.CHANNEL_SMS, inject)
    out.notes.append(f"SMSC down {notes.get('down')}s after a drop")
    check(out, cs)


async def test_duplicated_receipts(cs: ChaosStack) -> None:
    async def inject(cid: str) -> float:
        return time.monotonic()

    # The simulator sends every receipt twice (HERALD_SMPP_SIM_DUPLICATE_RECEIPTS).
    await asyncio.to_thread(cs.stop_smsc)
    await asyncio.to_thread(cs.start_smsc, HERALD_SMPP_SIM_DUPLICATE_RECEIPTS="1")
    try:
        out = await run_fault(cs, "duplicated receipts", c.CHANNEL_SMS, inject)
        out.notes.append(f"receipts duplicated by the SMSC: {cs.truth.smsc_counter('receipts_duplicated')}")
    finally:
        await asyncio.to_thread(cs.stop_smsc)
        await asyncio.to_thread(cs.start_smsc, HERALD_SMPP_SIM_DUPLICATE_RECEIPTS="0")
    check(out, cs)


async def test_smtp_relay_4xx(cs: ChaosStack) -> None:
    async def inject(cid: str) -> float:
        await faults.mid_sending(cs, cid, 0.2)
        # The sink's fault mode: every recipient answered 451 4.3.0 while this file exists.
        cs.tempfail_file.touch()
        await asyncio.sleep(1.0)  # mails already past RCPT may still land
        before = sum(cs.truth.mails().values())
        await asyncio.sleep(cs.scale.smtp_defer - 1.0)
        landed = sum(cs.truth.mails().values()) - before
        cs.tempfail_file.unlink()
        # A sink without the fault mode would take everything: the test would prove nothing.
        assert landed <= 4, f"the sink took {landed} mails while answering 451 (fault mode missing?)"
        return time.monotonic()

    out = await run_fault(cs, f"SMTP relay 451 for {cs.scale.smtp_defer:.0f}s", c.CHANNEL_EMAIL, inject)
    check(out, cs)


async def test_failures_at_the_tail(cs: ChaosStack) -> None:
    # No fault: the last 30 recipients are refused by the SMSC, so the last outcomes recorded
    # (after the receipts of the others) are failures. Auto-pause (5 failures in a row) must
    # not fire when nothing is left to send: the campaign completes DONE.
    phones = cs.phones(200) + cs.failing_phones(30)

    async def inject(cid: str) -> float:
        return time.monotonic()

    out = await run_fault(cs, "failures at the tail", c.CHANNEL_SMS, inject, phones=phones, rate=100)
    check(out, cs)
