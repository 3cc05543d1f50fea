"""PreviewContent: a campaign's content (or content given inline) rendered for one contact, a
sample recipient or the built-in sample, with the SMS encoding and part count of the result.
The same engine and variables as the sends (shared.templating)."""

from __future__ import annotations

import grpc
from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2 as rpb
from herald.v1 import recipients_pb2_grpc as rgrpc

from services.campaigns.store import Store
from services.campaigns.validation import TARGETS_TIMEOUT, unavailable
from shared import auth, channels, smstext, templating, validate
from shared.errors import HeraldError, invalid, not_found
from shared.masking import mask_text

# What an email preview shows for the link the gateway signs per message.
SAMPLE_UNSUBSCRIBE_URL = "https://example.com/unsubscribe/sample"


async def preview_content(store: Store, recipients: rgrpc.RecipientServiceStub | None,
                          p: auth.Principal, request: pb.PreviewContentRequest
                          ) -> pb.PreviewContentResponse:
    p.require("viewer", "operator", "moderator", "service")
    content, channel, field = await _content(store, p, request)
    variables = await _variables(recipients, p, request)
    ctx = templating.context(variables, **(
        {"unsubscribe_url": SAMPLE_UNSUBSCRIBE_URL}
        if "unsubscribe_url" in templating.CHANNEL_VARIABLES.get(channels.spec(channel).name, ()) else {}))
    out = pb.PreviewContentResponse()
    used: set[str] = set()
    bad: dict[str, str] = {}
    for part in ("text", "subject", "html"):
        source = getattr(content, part)
        try:
            used |= templating.variables(source)
            rendered = templating.render(source, ctx, html=part == "html")
        except templating.TemplateError as exc:
            bad[f"{field}.{part}"] = str(exc)
            continue
        # A real contact's phone may appear in the rendered text.
        setattr(out, part, mask_text(rendered, p) if request.contact_id else rendered)
    if bad:
        raise invalid(bad)
    out.variables.extend(sorted(used))
    out.characters = len(out.text)
    if channel == c.CHANNEL_SMS and out.text:
        try:
            enc = smstext.encode_text(out.text, max_parts=smstext.MAX_PARTS, reference=0)
            out.sms_parts = len(enc.parts)
            coding = enc.data_coding
        except smstext.TextTooLong as exc:
            out.sms_parts = exc.parts
            coding = smstext.DC_GSM7 if smstext.gsm7_encode(out.text) is not None else smstext.DC_UCS2
        out.sms_encoding = "GSM-7" if coding == smstext.DC_GSM7 else "UCS-2"
    return out


async def _content(store: Store, p: auth.Principal, request: pb.PreviewContentRequest
                   ) -> tuple[pb.Content, int, str]:
    """(content, channel, field path of the content for violations)."""
    if not request.campaign_id:
        if not channels.known(request.channel):
            names = [c.Channel.Name(s.channel) for s in channels.specs()]
            raise invalid({"channel": f"{', '.join(names[:-1])} or {names[-1]} (or give campaign_id)"})
        return request.content, request.channel, "content"
    if why := validate.uuid_text(request.campaign_id):
        raise invalid({"campaign_id": why})
    cp = await store.load(request.campaign_id, None if p.master else p.workspace)
    if cp is None:
        raise not_found("campaign", request.campaign_id)
    if not request.variant:
        return cp.content, cp.channel, "content"
    for i, v in enumerate(cp.variants):
        if v.name == request.variant:
            return v.content, cp.channel, f"variants[{i}].content"
    raise invalid({"variant": f"campaign {cp.id} has no variant {request.variant[:40]!r}"})


async def _variables(recipients: rgrpc.RecipientServiceStub | None, p: auth.Principal,
                     request: pb.PreviewContentRequest) -> dict[str, str]:
    if request.contact_id:
        if why := validate.uuid_text(request.contact_id):
            raise invalid({"contact_id": why})
        r = await _contact(recipients, p, request.contact_id)
    elif request.HasField("sample"):
        r = request.sample
    else:
        return dict(templating.SAMPLE)
    return templating.recipient_variables(
        first_name=r.first_name, last_name=r.last_name, phone=r.phone, email=r.email,
        external_id=r.external_id, language=r.language, contact_id=r.contact_id or request.contact_id,
        fields=dict(r.fields))


async def _contact(recipients: rgrpc.RecipientServiceStub | None, p: auth.Principal,
                   contact_id: str) -> c.Recipient:
    if recipients is None:
        raise unavailable()
    try:
        ct = await recipients.GetContact(rpb.GetContactRequest(id=contact_id),
                                         metadata=auth.call_metadata(workspace=p.workspace),
                                         timeout=TARGETS_TIMEOUT)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            raise not_found("contact", contact_id) from exc
        if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
            raise invalid({"contact_id": exc.details() or "invalid"}) from exc
        raise HeraldError(grpc.StatusCode.UNAVAILABLE,
                          "the recipients service could not return the contact; retry later") from exc
    return c.Recipient(contact_id=ct.id, phone=ct.phone, email=ct.email, first_name=ct.first_name,
                       last_name=ct.last_name, fields=dict(ct.fields), external_id=ct.external_id,
                       language=ct.language)
