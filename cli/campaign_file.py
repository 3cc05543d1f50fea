"""A campaign described in a YAML or JSON file (and/or flags) -> CreateCampaignRequest.

    name: Spring sale
    channel: sms                 # sms | email
    sender: HERALD
    content: {text: "Hi {{ first_name }}"}   # email: subject, text, html (or html_file)
    audience:
      categories: [newsletter]   # names or ids
      contacts: [<contact id>]
      recipients: ["+447700900001", {email: a@example.com, first_name: Ann}]
    schedule: {mode: on_time, start_at: "2030-01-01T09:00:00+00:00", end_at: ...,
               window: {start: "09:00", end: "20:00", time_zone: Europe/London}}
    max_rate: 50
    auto_start: true             # default true
    draft: false
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]
from herald.v1 import campaigns_pb2 as cpb
from herald.v1 import common_pb2 as c

CHANNELS = {"sms": c.CHANNEL_SMS, "email": c.CHANNEL_EMAIL}
MODES = {"on_demand": cpb.CAMPAIGN_MODE_ON_DEMAND, "now": cpb.CAMPAIGN_MODE_ON_DEMAND,
         "on_time": cpb.CAMPAIGN_MODE_ON_TIME, "scheduled": cpb.CAMPAIGN_MODE_ON_TIME,
         "spread": cpb.CAMPAIGN_MODE_SPREAD, "trigger": cpb.CAMPAIGN_MODE_TRIGGER}
TOP_KEYS = {"name", "description", "channel", "sender", "content", "audience", "schedule",
            "max_rate", "auto_pause_failures", "auto_start", "draft", "variants", "test_percent",
            "request_id"}


class SpecError(ValueError):
    """The campaign file (or a flag) says something Herald cannot take."""


def load(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise SpecError(f"{path}: {exc}") from exc
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping of campaign fields")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise SpecError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} "
                        f"(known: {', '.join(sorted(TOP_KEYS))})")
    data["_dir"] = str(path.parent)
    return data


def _choice(value: str, table: dict[str, int], what: str) -> int:
    key = str(value).strip().lower().replace("-", "_")
    if key not in table:
        raise SpecError(f"{what} {value!r}: one of {', '.join(sorted(table))}")
    return table[key]


def _time(value: Any, what: str) -> datetime:
    if isinstance(value, datetime):
        return value
    try:
        dt = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise SpecError(f"{what} {value!r}: ISO 8601 expected, e.g. 2030-01-01T09:00:00+00:00") from exc
    return dt if dt.tzinfo else dt.astimezone()  # no offset: the local time zone


def _content(raw: dict[str, Any], base: Path) -> cpb.Content:
    raw = dict(raw or {})
    for key in ("text", "html"):
        if f"{key}_file" in raw:
            raw[key] = (base / raw.pop(f"{key}_file")).read_text(encoding="utf-8")
    unknown = set(raw) - {"text", "subject", "html", "template_name"}
    if unknown:
        raise SpecError(f"content: unknown key(s) {', '.join(sorted(unknown))}")
    return cpb.Content(**{k: str(v) for k, v in raw.items()})


def _recipient(value: Any) -> c.Recipient:
    if isinstance(value, str):
        return c.Recipient(email=value) if "@" in value else c.Recipient(phone=value)
    if isinstance(value, dict):
        fields = {str(k): str(v) for k, v in (value.get("fields") or {}).items()}
        known = {k: str(v) for k, v in value.items() if k != "fields"}
        try:
            return c.Recipient(fields=fields, **known)
        except ValueError as exc:
            raise SpecError(f"audience.recipients: {exc}") from exc
    raise SpecError(f"audience.recipients: {value!r} is neither an address nor a mapping")


def build(spec: dict[str, Any], category_ids: dict[str, str]) -> cpb.CreateCampaignRequest:
    """spec: the file's mapping with flags merged in; category_ids: name -> id of the
    workspace's categories (ids map to themselves)."""
    base = Path(spec.get("_dir", "."))
    camp = cpb.Campaign(name=str(spec.get("name") or ""), description=str(spec.get("description") or ""),
                        sender=str(spec.get("sender") or ""),
                        auto_start=bool(spec.get("auto_start", True)))
    if not spec.get("channel"):
        raise SpecError("channel: sms or email is required")
    camp.channel = _choice(spec["channel"], CHANNELS, "channel")
    camp.content.CopyFrom(_content(spec.get("content") or {}, base))
    audience = dict(spec.get("audience") or {})
    for name in audience.get("categories") or []:
        if str(name) not in category_ids:
            raise SpecError(f"audience.categories: no category {name!r} in the workspace "
                            f"(herald categories list)")
        camp.category_ids.append(category_ids[str(name)])
    schedule = dict(spec.get("schedule") or {})
    if "mode" in schedule:
        camp.mode = _choice(schedule["mode"], MODES, "schedule.mode")
    for key in ("start_at", "end_at"):
        if schedule.get(key):
            getattr(camp, key).FromDatetime(_time(schedule[key], f"schedule.{key}"))
    if schedule.get("window"):
        camp.window.CopyFrom(cpb.SendingWindow(**{k: str(v) for k, v in schedule["window"].items()}))
    if spec.get("max_rate") is not None:
        camp.max_rate = float(spec["max_rate"])
    if spec.get("auto_pause_failures") is not None:
        camp.auto_pause_failures = int(spec["auto_pause_failures"])
    for v in spec.get("variants") or []:
        camp.variants.add(name=str(v.get("name", "")), split_percent=int(v.get("split_percent", 0)),
                          content=_content(v.get("content") or {}, base))
    if spec.get("test_percent") is not None:
        camp.test_percent = int(spec["test_percent"])
    req = cpb.CreateCampaignRequest(campaign=camp, draft=bool(spec.get("draft", False)),
                                    request_id=str(spec.get("request_id") or ""))
    req.recipients.extend(c.Recipient(contact_id=str(x)) for x in audience.get("contacts") or [])
    req.recipients.extend(_recipient(x) for x in audience.get("recipients") or [])
    if audience.get("source_campaign"):
        req.source_campaign_id = str(audience["source_campaign"])
        req.source_filter = str(audience.get("source_filter") or "")
    return req


def merge_flags(spec: dict[str, Any], args: Any) -> dict[str, Any]:
    """Flags given on the command line win over the file's values."""
    spec = dict(spec)
    for key in ("name", "channel", "sender", "description", "max_rate", "request_id"):
        if getattr(args, key, None) not in (None, ""):
            spec[key] = getattr(args, key)
    content = dict(spec.get("content") or {})
    for key in ("text", "subject", "html"):
        if getattr(args, key, None):
            content[key] = getattr(args, key)
    spec["content"] = content
    audience = dict(spec.get("audience") or {})
    if args.category:
        audience["categories"] = [*(audience.get("categories") or []), *args.category]
    if args.contact:
        audience["contacts"] = [*(audience.get("contacts") or []), *args.contact]
    if args.to:
        audience["recipients"] = [*(audience.get("recipients") or []), *args.to]
    spec["audience"] = audience
    schedule = dict(spec.get("schedule") or {})
    for key in ("mode", "start_at", "end_at"):
        if getattr(args, key, None):
            schedule[key] = getattr(args, key)
    spec["schedule"] = schedule
    if args.draft:
        spec["draft"] = True
    if args.no_auto_start:
        spec["auto_start"] = False
    return spec
