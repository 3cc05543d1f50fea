"""The ESME session against the SMSC simulator over real TCP: window and response timeout,
keep-alive, reconnect after the SMSC drops us, refused binds, receipt retries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from gateways.smpp import pdu, receipts
from gateways.smpp.session import ClientConfig, ResponseTimeout, SmppClient
from gateways.smpp.simulator import SimulatorConfig, SmscSimulator

SUBMIT = dict(source_addr="HERALD", source_addr_ton=5, dest_addr_ton=1, dest_addr_npi=1,
              registered_delivery=1, short_message=b"test")


async def ok(_frame: pdu.Frame) -> int:
    return pdu.ESME_ROK


@asynccontextmanager
async def running(sim_cfg: SimulatorConfig, on_deliver: Callable[[pdu.Frame], Awaitable[int]] = ok,
                  **client_kw: object) -> AsyncIterator[tuple[SmscSimulator, SmppClient]]:
    sim = SmscSimulator(sim_cfg)
    port = await sim.start()
    cfg = ClientConfig("127.0.0.1", port, **{"system_id": "herald", "reconnect_min": 0.05,
                                             "reconnect_max": 0.2, **client_kw})  # type: ignore[arg-type]
    client = SmppClient(cfg, on_deliver)
    client.start()
    try:
        yield sim, client
    finally:
        await client.close()
        await sim.stop()


async def eventually(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if cond():
                return
            await asyncio.sleep(0.02)


async def test_window_fills_and_a_silent_smsc_times_out() -> None:
    async with running(SimulatorConfig(drop_pattern="900099$"), window=8,
                       response_timeout=0.3) as (sim, client):
        assert await client.wait_bound(5)
        results = await asyncio.gather(
            *(client.submit(destination_addr=f"4477009000{i:02d}", **SUBMIT) for i in range(40)),
            client.submit(destination_addr="447700900099", **SUBMIT),
            return_exceptions=True,
        )
        assert all(isinstance(r, pdu.Frame) and r.status == 0 for r in results[:40])
        assert isinstance(results[40], ResponseTimeout)
        assert client.in_use == 0 and client.free == 8  # every slot came back, the timed-out one included
        assert sim.stats.submits_accepted == 40 and sim.stats.submits_dropped == 1


async def test_keepalive_and_reconnect_after_the_smsc_drops_the_connection() -> None:
    async with running(SimulatorConfig(), enquire_link_interval=0.05) as (sim, client):
        assert await client.wait_bound(5)
        await eventually(lambda: sim.stats.enquire_links >= 2)
        sim.drop_connections()
        await eventually(lambda: client.binds == 2 and client.bound.is_set())
        resp = await client.submit(destination_addr="447700900001", **SUBMIT)
        assert resp.status == 0 and resp.text_field("message_id")
        assert sim.stats.binds == 2


async def test_refused_bind_is_retried_not_fatal() -> None:
    async with running(SimulatorConfig(password="secret"), password="wrong") as (sim, client):
        await eventually(lambda: sim.stats.connections >= 2)  # kept trying
        assert not client.bound.is_set() and sim.stats.binds == 0
    async with running(SimulatorConfig(password="secret"), password="secret") as (sim, client):
        assert await client.wait_bound(5)


async def test_receipt_is_resent_until_the_esme_accepts_it() -> None:
    answers = [pdu.ESME_RX_T_APPN, pdu.ESME_RX_T_APPN, pdu.ESME_ROK]
    seen: list[receipts.Receipt] = []

    async def on_deliver(frame: pdu.Frame) -> int:
        r = receipts.parse(bytes(frame.body.short_message), frame.tlvs)
        assert r is not None
        seen.append(r)
        return answers[len(seen) - 1]

    sim_cfg = SimulatorConfig(receipt_delay=0.0, receipt_retry_delay=0.02, id_style="mixed")
    async with running(sim_cfg, on_deliver) as (sim, client):
        assert await client.wait_bound(5)
        resp = await client.submit(destination_addr="447700900001", **SUBMIT)
        await eventually(lambda: sim.stats.receipts_acked == 1)
        assert len(seen) == 3 and sim.stats.receipts_retried == 2
        # mixed style: hex in the response, decimal in the receipt; both normalise to one key
        smsc_id = resp.text_field("message_id")
        assert seen[0].message_id == f"{int(smsc_id, 16):010d}"
        assert receipts.normalise_id(seen[0].message_id) in receipts.id_keys(smsc_id)
        assert seen[0].stat == "DELIVRD" and seen[0].text == "test"


async def test_throughput_limit_is_never_exceeded() -> None:
    """A bind limited to 50 submit_sm/s spreads 26 submits over at least 0.5 s (the
    bucket's first slot is free, then one every 20 ms); all are answered."""
    async with running(SimulatorConfig(), throughput=50.0) as (sim, client):
        assert await client.wait_bound(5)
        t0 = asyncio.get_running_loop().time()
        results = await asyncio.gather(
            *(client.submit(destination_addr=f"4477009001{i:02d}", **SUBMIT) for i in range(26)))
        elapsed = asyncio.get_running_loop().time() - t0
        assert all(r.status == 0 for r in results)
        assert elapsed >= 0.5 * 0.98, elapsed
        assert client.in_use == 0 and client.queued == 0
        assert sim.stats.submits_accepted == 26


async def test_submits_queued_without_a_bind_fail_as_not_sent() -> None:
    """No SMSC to bind to: a queued submit fails with NotBound (nothing was sent, so the
    gateway may hand the job back) after response_timeout, instead of waiting forever."""
    from cli import procs
    from gateways.smpp.session import NotBound

    cfg = ClientConfig("127.0.0.1", procs.free_port(), "herald", response_timeout=0.3,
                       reconnect_min=0.05, reconnect_max=0.1)
    client = SmppClient(cfg, ok)
    client.start()
    try:
        with pytest.raises(NotBound):
            await asyncio.wait_for(client.submit(destination_addr="447700900001", **SUBMIT), 5)
        assert client.queued == 0 and client.in_use == 0
    finally:
        await client.close()


class _Gated:
    """A SubmitItem whose first write needs the client's gate (as the gateway's jobs do)."""

    def __init__(self, dest: str, fut: asyncio.Future[object]) -> None:
        self.dest = dest
        self.fut = fut
        self.needs_gate = True
        self.queued_at = self.sent_at = 0.0

    def build_pdu(self, sequence: int) -> bytes:
        return pdu.encode_submit_sm(sequence, destination_addr=self.dest, **SUBMIT)

    def on_result(self, result: object) -> None:
        if not self.fut.done():
            self.fut.set_result(result)


async def test_gate_sees_each_write_before_its_bytes_and_refused_items_are_never_written() -> None:
    """The gate is called with the items of a write before they are written (batched: fewer
    calls than items); an item it refuses gets NotWritten and never reaches the SMSC; a
    failing gate sends nothing and says why."""
    from gateways.smpp.session import NotWritten

    calls: list[list[str]] = []
    written_before: list[int] = []
    fail = {"on": False}

    async def gate(items: list[_Gated]) -> list[bool]:  # type: ignore[override]
        written_before.append(sim.stats.submits_total)
        calls.append([it.dest for it in items])
        await asyncio.sleep(0.01)  # a Redis round trip: more items become writable meanwhile
        if fail["on"]:
            raise ConnectionError("redis down")
        return [not it.dest.endswith("7") for it in items]

    sim = SmscSimulator(SimulatorConfig())
    port = await sim.start()
    client = SmppClient(ClientConfig("127.0.0.1", port, "herald", window=10), ok, gate)  # type: ignore[arg-type]
    client.start()
    try:
        assert await client.wait_bound(5)
        loop = asyncio.get_running_loop()
        items = [_Gated(f"4477009001{i:02d}", loop.create_future()) for i in range(60)]
        for it in items:
            client.enqueue(it)
        results = await asyncio.gather(*(it.fut for it in items))
        for it, res in zip(items, results, strict=True):
            if it.dest.endswith("7"):
                assert isinstance(res, NotWritten) and res.elsewhere
            else:
                assert isinstance(res, pdu.Frame) and res.status == 0
        assert sim.stats.submits_total == 54 and "447700900107" not in sim.stats.attempts
        assert len(calls) < 60 and sorted(d for c in calls for d in c) == sorted(it.dest for it in items)
        assert written_before[0] == 0  # nothing was written before the first gate call returned
        fail["on"] = True
        late = _Gated("447700900199", loop.create_future())
        client.enqueue(late)
        res = await late.fut
        assert isinstance(res, NotWritten) and not res.elsewhere and "ConnectionError: redis down" in str(res)
        assert sim.stats.submits_total == 54 and client.in_use == 0
    finally:
        await client.close()
        await sim.stop()
