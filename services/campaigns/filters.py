"""AIP-160-style filter strings of ListCampaigns and ListMessages, turned into SQL."""

from __future__ import annotations

import shlex
from datetime import datetime, timedelta
from typing import Any

from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from sqlalchemy import and_, func, or_

from services.campaigns import lifecycle
from services.campaigns.schema import campaigns, messages
from shared import auth
from shared.errors import invalid

PERIODS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7),
           "30d": timedelta(days=30)}


def period_delta(period: str) -> timedelta:
    if period not in PERIODS:
        raise invalid({"period": f"{period!r}: use all, {', '.join(PERIODS)}"})
    return PERIODS[period]


MAX_FILTER = 2000


def filter_terms(expr: str) -> list[tuple[str, list[str]]]:
    """'status=SENDING,PAUSED AND search="Herald Demo"' -> [(key, [values])]."""
    if len(expr) > MAX_FILTER:
        raise invalid({"filter": f"at most {MAX_FILTER} characters"})
    if "\x00" in expr:  # PostgreSQL text cannot hold NUL: refuse it rather than fail the query
        raise invalid({"filter": "must not contain NUL characters"})
    try:
        words = shlex.split(expr.replace(" AND ", " "))
    except ValueError as exc:
        raise invalid({"filter": f"unbalanced quotes: {exc}"}) from exc
    out = []
    for term in words:
        key, sep, val = term.partition("=")
        vals = [v.strip() for v in val.split(",") if v.strip()]
        if not sep or not vals:
            raise invalid({"filter": f"term {term!r} is not key=value"})
        out.append((key.strip(), vals))
    return out


def enum_values(enum: Any, prefix: str, vals: list[str], term: str) -> list[int]:
    try:
        return [enum.Value(prefix + v.upper()) for v in vals]
    except ValueError as exc:
        raise invalid({"filter": f"unknown value in {term}={','.join(vals)}"}) from exc


def like_escape(text: str) -> str:
    """Text for a LIKE pattern with ESCAPE '\\' that matches it literally: a search for
    '50%_off' or 'a\\b' finds exactly that, not any character or the next one escaped."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def names_status(expr: str, status: str) -> bool:
    """Whether the filter asks for this status by name (status=NEW shows the moderation
    queue's campaigns in the main list)."""
    return any(key == "status" and status in (v.upper() for v in vals)
               for key, vals in filter_terms(expr))


def campaign_filter(expr: str, p: auth.Principal, now: datetime) -> list[Any]:
    conds: list[Any] = []
    workspace_given = False
    for key, vals in filter_terms(expr):
        if key == "status":
            for v in vals:
                try:
                    lifecycle.value(v)
                except ValueError as exc:
                    raise invalid({"filter": f"unknown status {v!r}"}) from exc
            conds.append(campaigns.c.status.in_([v.upper() for v in vals]))
        elif key == "channel":
            conds.append(campaigns.c.channel.in_(enum_values(c.Channel, "CHANNEL_", vals, key)))
        elif key == "mode":
            conds.append(campaigns.c.mode.in_(enum_values(pb.CampaignMode, "CAMPAIGN_MODE_", vals, key)))
        elif key == "moderation":
            conds.append(campaigns.c.moderation.in_(
                enum_values(pb.ModerationState, "MODERATION_STATE_", vals, key)))
        elif key == "period":
            if vals[0] != "all":
                if vals[0] not in PERIODS:  # the request's field is `filter`, not `period`
                    raise invalid({"filter": f"period={vals[0]!r}: use all, {', '.join(PERIODS)}"})
                conds.append(campaigns.c.created_at >= now - PERIODS[vals[0]])
        elif key == "search":
            text = vals[0].lower()
            like = "%" + like_escape(text) + "%"
            conds.append(or_(campaigns.c.id.like(like_escape(text) + "%", escape="\\"),
                             func.lower(campaigns.c.sender).like(like, escape="\\"),
                             func.lower(campaigns.c.name).like(like, escape="\\")))
        elif key == "workspace":
            if not p.master:
                raise invalid({"filter": "workspace= needs the master role"})
            workspace_given = True
            conds.append(campaigns.c.workspace_id.in_(vals))
        else:
            raise invalid({"filter": f"unknown field {key!r} (status, channel, mode, moderation, "
                                     "period, search, workspace)"})
    if not p.master and not workspace_given:
        conds.append(campaigns.c.workspace_id == p.workspace)
    return conds


# stage= (how far Herald got, see MessageStage), by status and whether the carrier ever had
# the message (sent_at).
_HANDED = [c.MESSAGE_STATUS_SUBMITTED, c.MESSAGE_STATUS_DELIVERED, c.MESSAGE_STATUS_ASSUMED_DELIVERED]
_ENDED = [c.MESSAGE_STATUS_FAILED, c.MESSAGE_STATUS_OPTED_OUT, c.MESSAGE_STATUS_CANCELLED]
STAGES = {
    "new": messages.c.status == c.MESSAGE_STATUS_QUEUED,
    "sending": messages.c.status.in_([c.MESSAGE_STATUS_SENDING, c.MESSAGE_STATUS_DEFERRED]),
    "submitted": or_(messages.c.status.in_(_HANDED),
                     and_(messages.c.status.in_(_ENDED), messages.c.sent_at.is_not(None))),
    "not_sent": and_(messages.c.status.in_(_ENDED), messages.c.sent_at.is_(None)),
}

RESULTS = {
    "delivered": [c.MESSAGE_STATUS_DELIVERED, c.MESSAGE_STATUS_ASSUMED_DELIVERED],
    "failed": [c.MESSAGE_STATUS_FAILED],
}


def message_filter(expr: str) -> list[Any]:
    conds: list[Any] = []
    for key, vals in filter_terms(expr):
        if key == "status":
            conds.append(messages.c.status.in_(enum_values(c.MessageStatus, "MESSAGE_STATUS_", vals, key)))
        elif key == "category":
            conds.append(messages.c.failure_category.in_(
                enum_values(c.FailureCategory, "FAILURE_CATEGORY_", vals, key)))
        elif key == "carrier":
            named = [v.upper() for v in vals if v.lower() != "null"]
            alts = [messages.c.carrier_result.in_(named)] if named else []
            if len(named) < len(vals):
                alts.append(messages.c.carrier_result == "")
            conds.append(or_(*alts))
        elif key == "result":
            if any(v not in ("delivered", "failed", "unknown") for v in vals):
                raise invalid({"filter": "result= takes delivered, failed, unknown"})
            known = RESULTS["delivered"] + RESULTS["failed"]
            alts = [messages.c.status.in_(RESULTS[v]) for v in vals if v != "unknown"]
            if "unknown" in vals:
                alts.append(messages.c.status.not_in(known))
            conds.append(or_(*alts))
        elif key == "stage":
            bad = [v for v in vals if v.lower() not in STAGES]
            if bad:
                raise invalid({"filter": f"stage= takes {', '.join(STAGES)} (not {bad[0]!r})"})
            conds.append(or_(*(STAGES[v.lower()] for v in vals)))
        elif key == "search":
            like = "%" + like_escape(vals[0].lower()) + "%"
            conds.append(or_(func.lower(messages.c.address).like(like, escape="\\"),
                             func.lower(messages.c.contact_name).like(like, escape="\\")))
        else:
            raise invalid({"filter": f"unknown field {key!r} (status, category, carrier, result, stage, search)"})
    return conds


MAX_PAGE = 1000
DEFAULT_PAGE = 50
ORDERABLE = {"created": campaigns.c.created_at, "created_at": campaigns.c.created_at,
             "start": campaigns.c.start_at, "start_at": campaigns.c.start_at,
             "sender": campaigns.c.sender}


def page_size(requested: int) -> int:
    """AIP-158: 0 or less means the default; more than the maximum is capped."""
    return DEFAULT_PAGE if requested <= 0 else min(requested, MAX_PAGE)
