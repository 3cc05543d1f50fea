"""Validation of campaign input and its mapping onto SQL columns."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

import grpc
from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2 as rpb
from herald.v1 import recipients_pb2_grpc as rgrpc

from services.campaigns import settings, window
from shared import auth, channels, smstext, templating, validate
from shared.errors import HeraldError, field_violations, invalid
from shared.masking import mask_text
from shared.timeutil import aware, from_ts

log = logging.getLogger("herald.campaigns")

MODES = {pb.CAMPAIGN_MODE_ON_DEMAND, pb.CAMPAIGN_MODE_ON_TIME, pb.CAMPAIGN_MODE_SPREAD,
         pb.CAMPAIGN_MODE_TRIGGER}


MODERATED_FIELDS = {"sender", "content", "category_ids", "mode", "channel", "variants"}
EDITABLE_FIELDS = {"name", "description", "sender", "content", "category_ids", "start_at", "end_at",
                   "mode", "auto_start", "window", "max_rate", "auto_pause_failures", "variants",
                   "test_percent"}


MAX_DESCRIPTION = 2000
MAX_SENDER = 100
MAX_NOTE = 2000
MAX_RATE = 100_000.0  # messages per second; far above any route, keeps the pacing maths sane
MAX_AUTO_PAUSE = 1_000_000
PAST_GRACE = timedelta(seconds=60)  # clock skew and slow clients: "now" is not "in the past"
# Whose schedule is checked against now: the modes that send at start_at / until end_at.
TIMED = {pb.CAMPAIGN_MODE_ON_TIME, pb.CAMPAIGN_MODE_SPREAD}


def required_uuid(value: str) -> str | None:
    return "required" if not value else validate.uuid_text(value)


def _text_checks(bad: dict[str, str], prefix: str, cp: pb.Campaign) -> None:
    for name, value, limit in (("name", cp.name, validate.MAX_NAME),
                               ("description", cp.description, MAX_DESCRIPTION),
                               ("sender", cp.sender, MAX_SENDER),
                               ("content.template_name", cp.content.template_name, validate.MAX_NAME)):
        why = validate.length(value, limit) or ("must not contain NUL characters" if "\x00" in value else None)
        if why:
            bad[prefix + name] = why
    for name, contents in _contents(cp, prefix):
        for part in ("text", "subject", "html"):
            if "\x00" in getattr(contents, part):
                bad[f"{name}.{part}"] = "must not contain NUL characters"


def _contents(cp: pb.Campaign, prefix: str) -> list[tuple[str, pb.Content]]:
    """(field path, content) of the campaign's content and each variant's."""
    out = [(prefix + "content", cp.content)]
    out += [(f"{prefix}variants[{i}].content", v.content) for i, v in enumerate(cp.variants)]
    return out


def _times(bad: dict[str, str], prefix: str, cp: pb.Campaign, mode: int,
           now: datetime | None) -> None:
    """Range first (a Timestamp out of range cannot be converted), then order and past."""
    at: dict[str, datetime | None] = {}
    for name in ("start_at", "end_at"):
        at[name] = None
        if cp.HasField(name):
            why = validate.timestamp(getattr(cp, name))
            if why:
                bad[prefix + name] = why
            else:
                at[name] = from_ts(getattr(cp, name))
    start, end = at["start_at"], at["end_at"]
    if mode in TIMED and start is None and prefix + "start_at" not in bad:
        bad[prefix + "start_at"] = "required for ON_TIME and SPREAD campaigns"
    if mode == pb.CAMPAIGN_MODE_SPREAD and end is None and prefix + "end_at" not in bad:
        bad[prefix + "end_at"] = "required for SPREAD campaigns"
    if start and end and end <= start:
        bad[prefix + "end_at"] = "must be after start_at"
    if now is not None and mode in TIMED:
        for name, when in at.items():
            if when is not None and when < now - PAST_GRACE and prefix + name not in bad:
                bad[prefix + name] = f"{when.isoformat()} is in the past"


def validate_campaign(cp: pb.Campaign, has_audience: bool, prefix: str = "campaign.",
                      now: datetime | None = None) -> dict[str, str]:
    """Every check that needs nothing but the campaign itself. now: check start_at/end_at
    against it (create, or an edit of the schedule)."""
    bad: dict[str, str] = {}
    if validate.enum_value(c.Channel, cp.channel) or not channels.known(cp.channel):
        bad[prefix + "channel"] = f"must be {', '.join(CHANNEL_NAMES[:-1])} or {CHANNEL_NAMES[-1]}"
    mode = cp.mode or pb.CAMPAIGN_MODE_ON_DEMAND
    if mode not in MODES:
        bad[prefix + "mode"] = f"unknown mode {cp.mode}"
    if not cp.sender.strip():
        bad[prefix + "sender"] = "required (SMS source address or email From)"
    _text_checks(bad, prefix, cp)
    if channels.known(cp.channel) and not cp.variants:
        bad.update(missing_content(channels.spec(cp.channel), cp.content, prefix + "content"))
    _times(bad, prefix, cp, mode, now)
    for i, cat in enumerate(cp.category_ids):
        if why := validate.uuid_text(cat):
            bad[f"{prefix}category_ids[{i}]"] = why
    if not has_audience and mode != pb.CAMPAIGN_MODE_TRIGGER:
        bad["recipients"] = "give inline recipients or campaign.category_ids"
    if why := validate.finite(cp.max_rate):
        bad[prefix + "max_rate"] = why
    elif not 0 <= cp.max_rate <= MAX_RATE:
        bad[prefix + "max_rate"] = f"0 (no cap) to {MAX_RATE:g} messages per second"
    if not -1 <= cp.auto_pause_failures <= MAX_AUTO_PAUSE:
        bad[prefix + "auto_pause_failures"] = f"-1 (never), 0 (default) or 1..{MAX_AUTO_PAUSE}"
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
        if not channels.known(cp.channel):
            break
        missing = missing_content(channels.spec(cp.channel), v.content, f"{prefix}variants[{i}].content")
        if len(missing) > 1:  # several fields: one violation for the content
            missing = {f"{prefix}variants[{i}].content": f"{_first_field(cp.channel)} and "
                       f"{_body_words(channels.spec(cp.channel))} are required"}
        bad.update(missing)
    return bad


# Shown in violations: the campaign content fields by their kind of part.
PART_WORDS = {"text": "text", "html": "HTML", "subject": "subject"}
CHANNEL_NAMES = [c.Channel.Name(s.channel) for s in channels.specs()]


def _first_field(channel: int) -> str:
    return channels.spec(channel).content_fields[0]


def _body_words(spec: channels.ChannelSpec) -> str:
    """'an HTML or text body' for a channel whose body may be any of several parts."""
    return f"an {' or '.join(PART_WORDS.get(f, f) for f in reversed(spec.content_fields[1:]))} body"


def missing_content(spec: channels.ChannelSpec, content: pb.Content, at: str) -> dict[str, str]:
    """What a content lacks for the channel (shared.channels content_fields): its first field
    (an SMS's text, an email's subject) and, with several, one body among the others."""
    bad: dict[str, str] = {}
    first, rest = spec.content_fields[0], spec.content_fields[1:]
    if not getattr(content, first).strip():
        bad[f"{at}.{first}"] = f"required for {spec.label}"
    if rest and not any(getattr(content, f).strip() for f in rest):
        bad[f"{at}.{rest[-1]}"] = f"{_body_words(spec)} is required for {spec.label}"
    return bad


def validate_create(req: pb.CreateCampaignRequest, now: datetime) -> None:
    """The request's own checks (before the recipients service is asked anything)."""
    bad = validate_campaign(req.campaign, bool(req.recipients or req.campaign.category_ids),
                            now=now)
    if why := validate.request_id(req.request_id):
        bad["request_id"] = why
    spec = channels.spec(req.campaign.channel) if channels.known(req.campaign.channel) else None
    for i, r in enumerate(req.recipients):
        if not (r.phone or r.email or r.contact_id or (spec is not None and spec.address_of(r))):
            bad[f"recipients[{i}]"] = ("needs a phone, an email or a contact_id"
                                       if spec is None or spec.address_kind in ("phone", "email")
                                       else f"needs {spec.an_address()} or a contact_id")
        elif r.contact_id and (why := validate.uuid_text(r.contact_id)):
            bad[f"recipients[{i}].contact_id"] = why
    if bad:
        raise invalid(bad)


def _sample(field_names: list[str], inline: list[c.Recipient]) -> dict[str, str]:
    """Render context for the size check: the built-in sample, and per custom field the
    longest value an inline recipient carries (contacts' values are not known here)."""
    longest: dict[str, str] = dict.fromkeys(field_names, "")
    for r in inline:
        for k, v in r.fields.items():
            if len(v) > len(longest.get(k, "")):
                longest[k] = v
    return {**longest, **templating.SAMPLE}


def content_issues(cp: pb.Campaign, field_names: list[str], inline: list[c.Recipient],
                   prefix: str = "campaign.") -> dict[str, str]:
    """Templates (syntax, unknown variables) and the channel's size limit of every content.

    TRIGGER campaigns get their fields with each call, so any variable name is accepted for
    them (the syntax is still checked); other modes know only the built-in variables and the
    custom fields of their targeted contacts and inline recipients."""
    bad: dict[str, str] = {}
    channel = channels.spec(cp.channel).name if channels.known(cp.channel) else "sms"
    trigger = cp.mode == pb.CAMPAIGN_MODE_TRIGGER
    known = templating.known_variables(channel, field_names)
    for name, content in _contents(cp, prefix):
        for part in ("text", "subject", "html"):
            source = getattr(content, part)
            issues = templating.check(source, _used(source) if trigger else known)
            if issues:
                bad[f"{name}.{part}"] = "; ".join(str(i) for i in issues)
        if bad:
            continue
        if channel == "sms":
            if why := _sms_size(content.text, _sample(field_names, inline)):
                bad[f"{name}.text"] = why
        else:
            size = sum(len(getattr(content, f).encode("utf-8")) for f in ("subject", "text", "html"))
            limit = settings.EMAIL_MAX_BYTES.get_int()
            if size > limit:
                bad[name] = (f"subject + text + html are {size} bytes; at most {limit} "
                             "(HERALD_EMAIL_MAX_BYTES)")
    return bad


def _used(source: str) -> set[str]:
    try:
        return templating.variables(source)
    except templating.TemplateError:
        return set()  # check() reports the syntax error


def _sms_size(text: str, sample: dict[str, str]) -> str | None:
    limit = settings.SMS_MAX_PARTS.get_int()
    try:
        rendered = templating.render(text, templating.context(sample))
    except templating.TemplateError:
        rendered = text  # fails on sample values only: the unrendered length still counts
    try:
        smstext.encode_text(rendered, max_parts=limit, reference=0)
    except smstext.TextTooLong as exc:
        return f"{exc} (HERALD_SMS_MAX_PARTS), rendered with sample values"
    return None


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


async def check_targets(recipients: rgrpc.RecipientServiceStub | None, principal: auth.Principal,
                        cp: pb.Campaign, inline: list[c.Recipient],
                        prefix: str = "campaign.") -> tuple[dict[str, str], list[str]]:
    """RecipientService.ValidateTargets: (violations, custom field names). Never accepts
    unchecked: if the recipients service cannot answer, the call fails UNAVAILABLE."""
    if recipients is None:
        raise unavailable()
    req = rpb.ValidateTargetsRequest(
        channel=cp.channel, sender=cp.sender.strip(), category_ids=list(cp.category_ids),
        inline=inline, categories_field=prefix + "category_ids", inline_field="recipients",
        sender_field=prefix + "sender")
    try:
        resp = await recipients.ValidateTargets(
            req, metadata=auth.call_metadata(workspace=principal.workspace),
            timeout=TARGETS_TIMEOUT)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
            raise invalid({k: mask_text(v, principal) for k, v in field_violations(exc).items()}
                          or {"recipients": mask_text(exc.details() or "invalid", principal)}) from exc
        log.warning("recipients service cannot validate targets", extra={"code": exc.code().name})
        raise unavailable() from exc
    bad = {v.field: mask_text(v.description, principal) for v in resp.violations}
    return bad, list(resp.field_names)


TARGETS_TIMEOUT = 10.0


def unavailable() -> HeraldError:
    return HeraldError(grpc.StatusCode.UNAVAILABLE,
                       "the recipients service could not check the campaign's targets and "
                       "sender; nothing was stored, retry later")


def inline_field_names(recipients: list[c.Recipient]) -> list[str]:
    return sorted({k for r in recipients for k in r.fields})
