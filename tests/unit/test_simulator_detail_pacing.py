"""The simulator's ground-truth file carries its per-destination maps in every snapshot
while they are small (tests read them), and at most every few seconds beyond that: copied and
written 20 times a second, a million destinations' maps cost more CPU than all of Herald."""

from __future__ import annotations

from gateways.smpp.simulator import stats as st


def _stats(destinations: int) -> st.SimStats:
    s = st.SimStats()
    for i in range(destinations):
        s.attempts[f"44770090{i:06d}"] += 1
        s.accepted[f"44770090{i:06d}"] += 1
    return s


def test_small_maps_go_into_every_snapshot() -> None:
    pacer = st.DetailPacer(_stats(st.DETAIL_MAX))
    assert all(pacer.due() for _ in range(50))


def test_large_maps_are_paced_and_the_counters_are_always_there(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    s = _stats(st.DETAIL_MAX + 1)
    clock = [1000.0]
    monkeypatch.setattr(st.time, "monotonic", lambda: clock[0])
    pacer = st.DetailPacer(s)
    assert pacer.due()  # the first
    assert not any(pacer.due() for _ in range(50))
    clock[0] += st.DETAIL_EVERY
    assert pacer.due() and not pacer.due()
    light = s.as_dict(detail=False)
    assert "accepted" not in light and light["destinations"] == st.DETAIL_MAX + 1
    assert light["submits_accepted"] == s.submits_accepted
    full = s.as_dict()
    assert len(full["accepted"]) == len(full["attempts"]) == st.DETAIL_MAX + 1
