"""MessageEvents as the argument of one call of the event script (services.stats.event_script):
the batch as one JSON array, event_script.FIELDS_PER_EVENT values per event. One string for
the whole batch costs one json.dumps (C) here and one cjson.decode (C, built into Redis's Lua)
there, instead of packing and parsing eleven arguments per event."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from herald.v1 import events_pb2 as e

from services.stats.event_script import COUNTER_OPS
from shared import states

_KIND_STATUS = states.KIND_STATUS
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


_TEXTS = [str(n) for n in range(64)]


def _text(n: int) -> str:
    return _TEXTS[n] if 0 <= n < 64 else str(n)


class Days:
    """yyyymmdd (UTC) of events' occurred_at, remembered per day number: a batch's events
    nearly all fall on one or two days, and formatting a datetime costs more than the rest
    of an event's arguments."""

    def __init__(self) -> None:
        self._by_day: dict[int, str] = {}

    def of(self, ev: e.MessageEvent, now_day: str) -> str:
        ts = ev.occurred_at
        seconds = ts.seconds
        if seconds == 0 and ts.nanos == 0:  # not set: the time it is applied
            return now_day
        day = seconds // 86400  # nanos never cross a day: they are below one second
        text = self._by_day.get(day)
        if text is None:
            if len(self._by_day) > 1000:
                self._by_day.clear()
            text = self._by_day[day] = ts.ToDatetime(tzinfo=UTC).strftime("%Y%m%d")
        return text


def event_fields(ev: e.MessageEvent, days: Days, now_day: str) -> list[object] | None:
    """The event's values in the script's order, or None: ignored (unknown kind, missing ids)."""
    message_id = ev.message_id
    if not message_id:
        return None
    kind = ev.kind
    op = COUNTER_OPS.get(kind)
    status = 0
    if op is None:
        status = _KIND_STATUS.get(kind, 0)
        if not status:
            return None
        op = "status"
    elif not ev.event_id:
        return None  # cannot be de-duplicated, so cannot be counted safely
    # Channel and attempt as the text the script stores (no number formatting in Redis).
    return [
        message_id,
        ev.event_id,
        op,
        status,
        ev.campaign_id,
        ev.workspace_id,
        _text(ev.channel),
        ev.variant,
        days.of(ev, now_day),
        1 if ev.machine_open else 0,
        _text(ev.attempt),
    ]


def pack_events(
    events: list[e.MessageEvent], now: datetime, days: Days | None = None
) -> tuple[str, list[int]]:
    """The script's batch argument, and the positions in `events` of the events it holds
    (the others are ignored: see ignored_reason)."""
    days = days or Days()
    now_day = now.strftime("%Y%m%d")
    flat: list[object] = []
    kept: list[int] = []
    for i, ev in enumerate(events):
        fields = event_fields(ev, days, now_day)
        if fields is not None:
            flat += fields
            kept.append(i)
    return _dumps(flat), kept


def ignored_reason(ev: e.MessageEvent) -> str:
    """Why event_fields gave None for the event (for the log)."""
    if not ev.message_id:
        return "no message_id"
    if ev.kind in COUNTER_OPS:
        return "no event_id (an open/click/reply cannot be de-duplicated)"
    return "unknown kind (a newer producer?)"
