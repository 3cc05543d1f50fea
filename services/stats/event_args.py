"""A MessageEvent as the keys and arguments of one call of the event script
(services.stats.event_script), or None when the event cannot be applied."""

from __future__ import annotations

from datetime import datetime

from herald.v1 import events_pb2 as e

from services.stats.event_script import COUNTER_OPS
from shared import states
from shared.timeutil import from_ts


def script_argv(ev: e.MessageEvent, now: datetime, prefix: str, message_ttl: int,
                event_ttl: int, daily_ttl: int) -> list[str] | None:
    """KEYS (2) then ARGV of the script call, or None: ignored (unknown kind, missing ids)."""
    if not ev.message_id:
        return None
    op = COUNTER_OPS.get(ev.kind)
    status = 0
    if op is None:
        status = states.KIND_STATUS.get(ev.kind, 0)
        if not status:
            return None
        op = "status"
    elif not ev.event_id:
        return None  # cannot be de-duplicated, so cannot be counted safely
    day = (from_ts(ev.occurred_at) or now).strftime("%Y%m%d")
    keys = [f"{prefix}m:{ev.message_id}", f"{prefix}e:{ev.event_id}"]
    args = [prefix, op, str(status), ev.campaign_id, ev.workspace_id, str(ev.channel),
            ev.variant, day, "1" if ev.machine_open else "0", str(message_ttl),
            str(event_ttl), str(daily_ttl), str(ev.attempt)]
    return [*keys, *args]


def ignored_reason(ev: e.MessageEvent) -> str:
    """Why script_argv gave None for the event (for the log)."""
    if not ev.message_id:
        return "no message_id"
    if ev.kind in COUNTER_OPS:
        return "no event_id (an open/click/reply cannot be de-duplicated)"
    return "unknown kind (a newer producer?)"
