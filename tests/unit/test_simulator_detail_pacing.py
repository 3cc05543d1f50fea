"""The simulator writes its per-destination maps with every change while they are small, and
beyond DETAIL_MAX destinations every DETAIL_EVERY seconds while submits keep coming or once
they pause for QUIET_AFTER: copied and written 20 times a second, a million destinations'
maps cost more CPU than all of Herald. The counters carry the maps' version either way."""

from __future__ import annotations

from gateways.smpp.simulator import stats as st


def _stats(destinations: int) -> st.SimStats:
    s = st.SimStats()
    for i in range(destinations):
        _submit(s, f"44770090{i:06d}")
    return s


def _submit(s: st.SimStats, dest: str) -> None:
    s.attempts[dest] += 1
    s.submits_total += 1
    s.accept(dest, f"{dest}|x")


def test_small_maps_are_due_whenever_they_changed() -> None:
    s = _stats(st.DETAIL_MAX - 10)
    pacer = st.DetailPacer(s)
    assert pacer.due() and not pacer.due()  # unchanged: nothing to write
    for i in range(5):
        _submit(s, f"44770091{i:04d}")
        assert pacer.due()


def test_large_maps_are_paced_while_submits_come_and_written_when_they_pause(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    s = _stats(st.DETAIL_MAX + 1)
    clock = [1000.0]
    monkeypatch.setattr(st.time, "monotonic", lambda: clock[0])
    pacer = st.DetailPacer(s)
    assert pacer.due()  # the first
    for i in range(50):  # a submit every 50 ms: never quiet, only the 5-second beat
        clock[0] += 0.05
        _submit(s, f"44770092{i:04d}")
        assert not pacer.due(), i
    clock[0] += st.DETAIL_EVERY
    _submit(s, "447700930000")
    assert pacer.due() and not pacer.due()
    _submit(s, "447700930001")
    assert not pacer.due()
    clock[0] += st.QUIET_AFTER  # no submit since: the maps catch up
    assert pacer.due() and not pacer.due()
    counters, maps = s.counters(), s.maps()
    assert "accepted" not in counters and counters["destinations"] == st.DETAIL_MAX + 53
    assert counters["maps_version"] == maps["maps_version"] == s.submits_total + s.submits_accepted
    assert len(maps["accepted"]) == len(maps["attempts"]) == st.DETAIL_MAX + 53
