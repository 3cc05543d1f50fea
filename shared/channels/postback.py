"""Postback: a JSON body POSTed to an http(s) URL. The URL is the address; a recipient carries
it in its `url` field (fields["url"]: inline, or a contact's custom field). The campaign's
content text is the body template (render values with `| tojson`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from shared import states
from shared.channels.spec import MAX_SENDER, AddressError, ChannelSpec, checked_input

URL_FIELD = "url"
_SENDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_EMPTY = e.PostbackContent()


def normalise_url(raw: str) -> str:
    """scheme://host[:port]/path?query with scheme and host lower-cased, fragment dropped."""
    text = checked_input(raw)
    if any(ch.isspace() or not ch.isprintable() for ch in text):
        raise AddressError(f"{text!r} is not a URL (spaces or control characters)")
    try:
        parts = urlsplit(text)
        port = parts.port
        host = (parts.hostname or "").encode("idna").decode("ascii")
    except (ValueError, UnicodeError) as exc:
        raise AddressError(f"{text!r} is not a URL") from exc
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise AddressError(f"{text!r} is not an http(s) URL")
    if parts.username is not None or parts.password is not None:
        raise AddressError(f"{text!r}: credentials in a URL are refused")
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, ""))


def postback_content(job: e.MessageJob) -> e.PostbackContent:
    return job.postback if job.WhichOneof("content") == "postback" else _EMPTY


class PostbackChannel(ChannelSpec):
    channel = c.CHANNEL_POSTBACK
    name = "postback"
    label = "postback"
    subject = "jobs.postback"
    address_kind = "url"
    address_noun = "URL"
    address_field = "fields.url"
    content_fields = ("text",)
    # A 2xx answer from the receiver settles the message.
    final_statuses = frozenset(states.FINAL | {c.MESSAGE_STATUS_SUBMITTED})

    def normalise_address(self, raw: str) -> str:
        return normalise_url(raw)

    def normalise_sender(self, raw: str) -> str:
        text = raw.strip()
        if len(raw) > MAX_SENDER or not _SENDER.fullmatch(text):
            raise AddressError(f"{text[:100]!r} is not a postback sender name (1-64 letters, "
                               "digits, '.', '_' or '-')")
        return text

    def address_of(self, recipient: c.Recipient) -> str:
        return recipient.fields.get(URL_FIELD, "")

    def set_address(self, recipient: c.Recipient, address: str) -> None:
        recipient.fields[URL_FIELD] = address

    def content(self, job: e.MessageJob) -> e.PostbackContent:
        return postback_content(job)

    def set_content(self, job: e.MessageJob, fields: Mapping[str, str]) -> None:
        job.postback.body = fields.get("text", "")

    def content_values(self, job: e.MessageJob) -> dict[str, str]:
        return {"text": postback_content(job).body}


SPEC = PostbackChannel()
