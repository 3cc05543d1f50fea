"""Daily sending windows in an IANA time zone (e.g. 09:00-20:00 Europe/Paris)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def parse_hhmm(value: str) -> time:
    hh, sep, mm = value.partition(":")
    if not sep or len(hh) != 2 or len(mm) != 2:
        raise ValueError(f"{value!r} is not HH:MM")
    return time(int(hh), int(mm))


def validate(start: str, end: str, tz: str) -> dict[str, str]:
    """Field violations of a window (empty dict when valid or when no window is set)."""
    if not (start or end or tz):
        return {}
    bad = {}
    for name, value in (("start", start), ("end", end)):
        try:
            parse_hhmm(value)
        except ValueError as exc:
            bad[f"campaign.window.{name}"] = str(exc)
    if not bad and start == end:
        bad["campaign.window.end"] = "must differ from start"
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        bad["campaign.window.time_zone"] = f"{tz!r} is not an IANA time zone"
    return bad


class Window:
    def __init__(self, start: str, end: str, tz: str) -> None:
        self.start, self.end, self.zone = parse_hhmm(start), parse_hhmm(end), ZoneInfo(tz)

    @classmethod
    def of(cls, row: dict) -> Window | None:
        if not row.get("window_tz"):
            return None
        return cls(row["window_start"], row["window_end"], row["window_tz"])

    def is_open(self, now: datetime) -> bool:
        local = now.astimezone(self.zone).time()
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # spans midnight

    def next_opening(self, now: datetime) -> datetime:
        local = now.astimezone(self.zone)
        for days in range(0, 3):
            day = (local + timedelta(days=days)).date()
            opening = datetime.combine(day, self.start, tzinfo=self.zone)
            if opening > local:
                return opening
        raise AssertionError("unreachable: an opening exists within two days")
