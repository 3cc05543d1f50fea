from datetime import UTC, datetime

from services.campaigns.window import Window, validate


def test_open_and_closed_in_local_time_across_dst() -> None:
    w = Window("09:00", "20:00", "Europe/Paris")
    assert w.is_open(datetime(2026, 7, 1, 7, 0, tzinfo=UTC))       # 09:00 CEST
    assert not w.is_open(datetime(2026, 7, 1, 6, 59, tzinfo=UTC))  # 08:59 CEST
    assert not w.is_open(datetime(2026, 1, 10, 19, 0, tzinfo=UTC))  # 20:00 CET: closed
    assert w.is_open(datetime(2026, 1, 10, 18, 59, tzinfo=UTC))


def test_window_spanning_midnight() -> None:
    w = Window("22:00", "02:00", "UTC")
    assert w.is_open(datetime(2026, 3, 1, 23, 0, tzinfo=UTC))
    assert w.is_open(datetime(2026, 3, 1, 1, 59, tzinfo=UTC))
    assert not w.is_open(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))


def test_next_opening_is_tomorrow_after_closing() -> None:
    w = Window("09:00", "20:00", "Europe/Paris")
    nxt = w.next_opening(datetime(2026, 1, 10, 19, 30, tzinfo=UTC))
    assert nxt.astimezone(UTC) == datetime(2026, 1, 11, 8, 0, tzinfo=UTC)


def test_validation_names_fields() -> None:
    assert validate("", "", "") == {}
    bad = validate("9am", "20:00", "Mars/Olympus")
    assert set(bad) == {"campaign.window.start", "campaign.window.time_zone"}
