"""The SMS a job sends: its text rendered for the recipient, then encoded (GSM 7-bit when
it fits, else UCS-2) and split into the parts of a concatenated message."""

from __future__ import annotations

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from gateways.smpp.rejection import JobRejected
from shared import channels, templating
from shared import smstext as encoding

FC = c  # top-level enum constants: EnumTypeWrapper lookups cost ~3 µs each (measured)


def render_text(job: e.MessageJob) -> str:
    """The SMS text of this recipient: its template rendered with job.fields (plain text, the
    bulk case, skips Jinja). Raises JobRejected, never sends an unrendered template."""
    source = text = channels.sms_content(job).text
    if templating.is_template(text):
        try:
            text = templating.render(text, templating.context(dict(job.fields)))
        except templating.TemplateError as exc:
            raise JobRejected("TEMPLATE_ERROR", f"the SMS text template could not be rendered: {exc}",
                              FC.FAILURE_CATEGORY_CONTENT_REJECTED) from exc
    if not text or text.isspace():
        raise JobRejected("EMPTY_TEXT", "the SMS text is empty" + (" once rendered" if source else ""),
                          FC.FAILURE_CATEGORY_CONTENT_REJECTED)
    return text


def encode(text: str, max_parts: int, udh16: bool) -> encoding.Encoded:
    """The data coding, ESM class and short_message of each part; a text longer than
    max_parts is refused, never truncated."""
    try:
        return encoding.encode_text(text, max_parts=max_parts, udh16=udh16)
    except encoding.TextTooLong as exc:
        raise JobRejected("TEXT_TOO_LONG", str(exc), FC.FAILURE_CATEGORY_CONTENT_REJECTED) from exc
