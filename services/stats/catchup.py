"""Waits until the stats consumer has applied every message event already on the bus (and
tells whether it has applied those up to a given EVENTS sequence).

RebuildCampaignStats reads a ledger page, then waits here before merging it: the ledger
can only hold events that were on the bus when the page was read, so once stats has applied
all of those too, an event counted by the ledger is never applied again after the merge (no
open, click or reply counted twice). The durable is shared by every stats pod, so the
answer comes from JetStream, not from this process."""

from __future__ import annotations

import asyncio

from nats.js import JetStreamContext

from shared import bus

POLL = 0.05  # seconds between consumer_info calls while waiting


class ConsumerBehind(Exception):
    """The consumer did not catch up within the timeout."""

    def __init__(self, pending: int, timeout: float) -> None:
        super().__init__(f"{pending} message events not yet applied after {timeout:g} s")
        self.pending = pending


class CatchUp:
    def __init__(self, js: JetStreamContext, durable: str, timeout: float) -> None:
        self.js = js
        self.durable = durable
        self.timeout = timeout

    async def wait(self) -> None:
        """Returns once every message event published before the call has been acked by the
        stats durable (its ack floor passed the stream's last sequence, or nothing is pending
        or unacked)."""
        target = (await self.js.stream_info(bus.EVENTS_STREAM)).state.last_seq
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while True:
            info = await self.js.consumer_info(bus.EVENTS_STREAM, self.durable)
            floor = info.ack_floor.stream_seq if info.ack_floor else 0
            pending = (info.num_pending or 0) + (info.num_ack_pending or 0)
            if (floor or 0) >= target or pending == 0:
                return
            if loop.time() > deadline:
                raise ConsumerBehind(pending, self.timeout)
            await asyncio.sleep(POLL)

    async def last_seq(self) -> int:
        """The EVENTS stream's last sequence now (every event published so far is at or below)."""
        return int((await self.js.stream_info(bus.EVENTS_STREAM)).state.last_seq or 0)

    async def applied_through(self, seq: int) -> bool:
        """Whether the stats durable has acked every message event at or below stream
        sequence seq (its ack floor reached it, or nothing is pending or unacked)."""
        if seq <= 0:
            return True
        info = await self.js.consumer_info(bus.EVENTS_STREAM, self.durable)
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        pending = (info.num_pending or 0) + (info.num_ack_pending or 0)
        return (floor or 0) >= seq or pending == 0
