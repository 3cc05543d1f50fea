"""kill -9 of each gateway with submits in flight: nothing lost, nothing sent twice, and
ABANDONED ("the carrier may have accepted it") only for submits that were on the wire."""

from __future__ import annotations

import pytest
from herald.v1 import common_pb2 as c

from tests.chaos import faults
from tests.chaos.harness import ChaosStack, check, run_fault

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1800)]

SMPP_WINDOW = 100   # HERALD_SMPP_WINDOW default: submit_sm written and unanswered at most
SMTP_POOL = 4       # HERALD_SMTP_POOL_SIZE default: mails in DATA at most


async def test_kill_smpp_gateway(cs: ChaosStack) -> None:
    async def inject(cid: str) -> float:
        await faults.mid_sending(cs, cid, 0.4)
        return await faults.kill_then_start(cs, "smpp-gateway")

    # Rate doubled: a full window of submits in flight when the gateway dies.
    out = await run_fault(cs, "kill -9 smpp-gateway", c.CHANNEL_SMS, inject, rate=cs.scale.sms_rate * 2)
    check(out, cs, unsent_tolerance=SMPP_WINDOW)


async def test_kill_email_gateway(cs: ChaosStack) -> None:
    async def inject(cid: str) -> float:
        await faults.mid_sending(cs, cid, 0.4)
        return await faults.kill_then_start(cs, "email-gateway")

    out = await run_fault(cs, "kill -9 email-gateway", c.CHANNEL_EMAIL, inject, rate=cs.scale.email_rate * 2)
    check(out, cs, unsent_tolerance=SMTP_POOL)
