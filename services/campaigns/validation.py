"""Validation of campaign input and its mapping onto SQL columns."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c

from services.campaigns import window
from shared.errors import invalid
from shared.timeutil import aware, from_ts

MODES = {pb.CAMPAIGN_MODE_ON_DEMAND, pb.CAMPAIGN_MODE_ON_TIME, pb.CAMPAIGN_MODE_SPREAD,
         pb.CAMPAIGN_MODE_TRIGGER}


MODERATED_FIELDS = {"sender", "content", "category_ids", "mode", "channel", "variants"}
EDITABLE_FIELDS = {"name", "description", "sender", "content", "category_ids", "start_at", "end_at",
                   "mode", "auto_start", "window", "max_rate", "auto_pause_failures", "variants",
                   "test_percent"}


def validate_campaign(cp: pb.Campaign, has_audience: bool, prefix: str = "campaign.") -> dict[str, str]:
    bad: dict[str, str] = {}
    if cp.channel not in (c.CHANNEL_SMS, c.CHANNEL_EMAIL):
        bad[prefix + "channel"] = "must be CHANNEL_SMS or CHANNEL_EMAIL"
    mode = cp.mode or pb.CAMPAIGN_MODE_ON_DEMAND
    if mode not in MODES:
        bad[prefix + "mode"] = "unknown mode"
    if not cp.sender.strip():
        bad[prefix + "sender"] = "required (SMS source address or email From)"
    if cp.channel == c.CHANNEL_SMS and not cp.content.text.strip() and not cp.variants:
        bad[prefix + "content.text"] = "required for SMS"
    if cp.channel == c.CHANNEL_EMAIL and not cp.variants:
        if not cp.content.subject.strip():
            bad[prefix + "content.subject"] = "required for email"
        if not (cp.content.html.strip() or cp.content.text.strip()):
            bad[prefix + "content.html"] = "an HTML or text body is required for email"
    start = from_ts(cp.start_at) if cp.HasField("start_at") else None
    end = from_ts(cp.end_at) if cp.HasField("end_at") else None
    if mode in (pb.CAMPAIGN_MODE_ON_TIME, pb.CAMPAIGN_MODE_SPREAD) and start is None:
        bad[prefix + "start_at"] = "required for ON_TIME and SPREAD campaigns"
    if mode == pb.CAMPAIGN_MODE_SPREAD and end is None:
        bad[prefix + "end_at"] = "required for SPREAD campaigns"
    if start and end and end <= start:
        bad[prefix + "end_at"] = "must be after start_at"
    if not has_audience and mode != pb.CAMPAIGN_MODE_TRIGGER:
        bad["recipients"] = "give inline recipients or campaign.category_ids"
    if cp.max_rate < 0:
        bad[prefix + "max_rate"] = "must not be negative"
    if cp.auto_pause_failures < -1:
        bad[prefix + "auto_pause_failures"] = "-1 (never), 0 (default) or a positive count"
    bad.update(validate_variants(cp, prefix))
    if cp.HasField("window"):
        bad.update({k.replace("campaign.", prefix, 1): v for k, v in window.validate(
            cp.window.start, cp.window.end, cp.window.time_zone).items()})
    return bad


def validate_variants(cp: pb.Campaign, prefix: str) -> dict[str, str]:
    bad: dict[str, str] = {}
    if not cp.variants:
        if cp.test_percent:
            bad[prefix + "test_percent"] = "only with variants"
        return bad
    if len(cp.variants) < 2:
        bad[prefix + "variants"] = "an A/B test needs at least two variants"
    names = [v.name.strip() for v in cp.variants]
    if any(not n or ":" in n or len(n) > 32 for n in names) or len(set(names)) != len(names):
        bad[prefix + "variants"] = "names must be unique, 1-32 characters, without ':'"
    if sum(v.split_percent for v in cp.variants) != 100 or any(v.split_percent <= 0 for v in cp.variants):
        bad[prefix + "variants"] = "split_percent values must be positive and add up to 100"
    if not 0 <= cp.test_percent <= 100:
        bad[prefix + "test_percent"] = "0 (everyone) to 100"
    for i, v in enumerate(cp.variants):
        if cp.channel == c.CHANNEL_SMS and not v.content.text.strip():
            bad[f"{prefix}variants[{i}].content.text"] = "required for SMS"
        if cp.channel == c.CHANNEL_EMAIL and not (v.content.subject.strip() and
                                                 (v.content.html.strip() or v.content.text.strip())):
            bad[f"{prefix}variants[{i}].content"] = "subject and an HTML or text body are required"
    return bad


def validate_create(req: pb.CreateCampaignRequest) -> None:
    bad = validate_campaign(req.campaign, bool(req.recipients or req.campaign.category_ids))
    for i, r in enumerate(req.recipients):
        if not (r.phone or r.email or r.contact_id):
            bad[f"recipients[{i}]"] = "needs a phone, an email or a contact_id"
    if bad:
        raise invalid(bad)


def column_values(cp: pb.Campaign, fields: set[str]) -> dict[str, Any]:
    """SQL column values for the named Campaign fields."""
    out: dict[str, Any] = {}
    if "name" in fields:
        out["name"] = cp.name
    if "description" in fields:
        out["description"] = cp.description
    if "sender" in fields:
        out["sender"] = cp.sender.strip()
    if "content" in fields:
        out.update(content_text=cp.content.text, content_subject=cp.content.subject,
                   content_html=cp.content.html, template_name=cp.content.template_name)
    if "category_ids" in fields:
        out["category_ids"] = list(cp.category_ids)
    if "start_at" in fields:
        out["start_at"] = from_ts(cp.start_at) if cp.HasField("start_at") else None
    if "end_at" in fields:
        out["end_at"] = from_ts(cp.end_at) if cp.HasField("end_at") else None
    if "mode" in fields:
        out["mode"] = cp.mode or pb.CAMPAIGN_MODE_ON_DEMAND
    if "auto_start" in fields:
        out["auto_start"] = cp.auto_start
    if "window" in fields:
        w = cp.window if cp.HasField("window") else pb.SendingWindow()
        out.update(window_start=w.start, window_end=w.end, window_tz=w.time_zone)
    if "max_rate" in fields:
        out["max_rate"] = cp.max_rate
    if "auto_pause_failures" in fields:
        out["auto_pause_failures"] = cp.auto_pause_failures
    if "variants" in fields:
        out["variants"] = [{"name": v.name.strip(), "split_percent": v.split_percent,
                            "content": {"text": v.content.text, "subject": v.content.subject,
                                        "html": v.content.html, "template_name": v.content.template_name}}
                           for v in cp.variants] or None
    if "test_percent" in fields:
        out["test_percent"] = cp.test_percent
    return out


def jsonable(value: Any) -> str:
    if isinstance(value, datetime):
        return json.dumps(aware(value).isoformat())
    return json.dumps(value, sort_keys=True, default=str)
