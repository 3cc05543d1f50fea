"""kill -9 of each gateway with submits in flight: nothing lost, nothing sent twice, and
ABANDONED ("the carrier may have accepted it") only for submits that were on the wire."""

from __future__ import annotations

import asyncio
import time

import pytest
from herald.v1 import common_pb2 as c

from tests.chaos import faults
from tests.chaos.harness import SMPP_WINDOW, SMTP_POOL, ChaosStack, check, run_fault

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1800)]



async def test_kill_smpp_gateway(cs: ChaosStack) -> None:
    # The gateway held to half the campaign's rate (HERALD_SMPP_THROUGHPUT): jobs pile up
    # fetched and claimed but not yet written when it dies. Those must be resent cleanly;
    # ABANDONED ("the SMSC may have accepted it") only for submit_sm already on the wire.
    env = cs.stack.module_env.setdefault("smpp-gateway", {})
    env["HERALD_SMPP_THROUGHPUT"] = str(int(cs.scale.sms_rate))
    await asyncio.to_thread(cs.stack.restart, "smpp-gateway")

    async def inject(cid: str) -> float:
        await faults.mid_sending(cs, cid, 0.4)
        return await faults.kill_then_start(cs, "smpp-gateway")

    try:
        out = await run_fault(cs, "kill -9 smpp-gateway", c.CHANNEL_SMS, inject, rate=cs.scale.sms_rate * 2)
    finally:
        env.pop("HERALD_SMPP_THROUGHPUT")
        await asyncio.to_thread(cs.stack.restart, "smpp-gateway")
    check(out, cs, unsent_tolerance=SMPP_WINDOW, abandoned_tolerance=SMPP_WINDOW)


async def test_kill_email_gateway(cs: ChaosStack) -> None:
    # Two mails whose relay answer is lost on the wire: the sink stores hold-...@ mails but holds
    # their 250 while hold_file exists, and the gateway is killed meanwhile. They are the only
    # duplicates allowed (the gateway cannot know the relay took them).
    addrs = cs.emails(cs.scale.email, "gwkill")
    n = len(addrs)
    held = [n * 6 // 10, n * 8 // 10]
    addrs = [f"hold-{a}" if i in held else a for i, a in enumerate(addrs)]
    cs.hold_file.touch()

    async def inject(cid: str) -> float:
        async def stored() -> bool:
            return any(a.startswith("hold-") for a in cs.truth.mails())

        deadline = time.monotonic() + cs.scale.final_timeout
        while not await stored():
            assert time.monotonic() < deadline, "no hold-...@ mail reached the sink"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # other mails in DATA too
        healed = await faults.kill_then_start(cs, "email-gateway")
        cs.hold_file.unlink()
        return healed

    out = await run_fault(cs, "kill -9 email-gateway", c.CHANNEL_EMAIL, inject,
                          rate=cs.scale.email_rate * 2, addrs=addrs)
    out.notes.append(f"{len(held)} relay answers lost on the wire (duplicates allowed for them)")
    # A mail is ABANDONED only if the relay had not answered it when the gateway died: one per
    # connection at most (each waits for a mail's 250 before it commits the next one's end).
    check(out, cs, unsent_tolerance=SMTP_POOL, allowed_duplicates=len(held),
          abandoned_tolerance=SMTP_POOL)
