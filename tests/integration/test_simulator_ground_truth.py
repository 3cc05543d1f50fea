"""The SMSC simulator's ground truth, as tests and benches read it from its files: once submits
pause, the per-destination maps include every submit the counters count, however many
destinations there are (beyond DETAIL_MAX the maps are written seldom, to spare CPU)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import smpplib.client
import smpplib.consts

from gateways.smpp.simulator import SimulatorConfig, SmscSimulator
from gateways.smpp.simulator import stats as st
from tests.chaos.truth import GroundTruth


def _submit(port: int, destinations: list[str]) -> None:
    """A plain SMPP client (smpplib) sends one SMS to each destination over TCP."""
    client = smpplib.client.Client("127.0.0.1", port, timeout=10)
    client.connect()
    try:
        client.bind_transmitter(system_id="truth", password="pw")
        for dest in destinations:
            client.send_message(source_addr="Herald", destination_addr=dest,
                                short_message=b"hello", dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
                                dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN)
            client.read_pdu()  # submit_sm_resp
        client.unbind()  # reads its unbind_resp
    finally:
        client.disconnect()


async def _run(tmp_path: Path, earlier: int) -> tuple[dict, GroundTruth]:
    stats_file = tmp_path / "smsc.json"
    sim = SmscSimulator(SimulatorConfig(stats_file=str(stats_file), hold_receipts=True))
    # Destinations an earlier part of the run reached (the million-recipient benches' scale).
    for i in range(earlier):
        dest = f"4474{i:08d}"
        sim.stats.attempts[dest] += 1
        sim.stats.submits_total += 1
        sim.stats.accept(dest, f"{dest}|earlier")
    port = await sim.start()
    truth = GroundTruth(stats_file, tmp_path)
    try:
        await asyncio.sleep(0.3)  # the first snapshots written: these submits come later in the run
        await asyncio.to_thread(_submit, port, ["447700900101", "447700900102", "447700900102"])
        for _ in range(100):  # the counters file follows within 50 ms
            counters = json.loads(stats_file.read_text())
            if counters["submits_accepted"] == earlier + 3:
                break
            await asyncio.sleep(0.05)
        assert counters["submits_accepted"] == earlier + 3, counters
        accepted, attempts = await asyncio.to_thread(truth.smsc)
    finally:
        await sim.stop()
    return {"accepted": accepted, "attempts": attempts}, truth


async def test_a_few_destinations_are_read_at_once(tmp_path: Path) -> None:
    got, _ = await _run(tmp_path, 0)
    assert got["accepted"] == {"447700900101": 1, "447700900102": 2}
    assert got["attempts"] == {"447700900101": 1, "447700900102": 2}


async def test_beyond_detail_max_the_maps_catch_up_once_submits_pause(tmp_path: Path) -> None:
    """Before: past DETAIL_MAX destinations the file dropped the maps between their 5-second
    writes, so a finished run read 0 submits (the chaos suite's 'ground truth 0 submits')."""
    got, truth = await _run(tmp_path, st.DETAIL_MAX + 1)
    assert got["accepted"]["447700900101"] == 1 and got["accepted"]["447700900102"] == 2
    assert sum(got["attempts"].values()) == st.DETAIL_MAX + 4
    # After a stop the final maps are there at once, and a restarted simulator's counts add up.
    truth.bank_smsc()
    assert truth.smsc()[0]["447700900102"] == 2
