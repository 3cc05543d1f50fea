"""Sender ids as they are registered and compared, by the channel registry: SMS source
addresses as sent, email From domains lower-cased (IDNA), whatever form the From was
written in."""

from __future__ import annotations

from services.recipients.normalize import BadAddress
from shared import channels
from shared.channels.email import email_domain
from shared.channels.sms import sms_source
from shared.channels.spec import MAX_SENDER

__all__ = ["MAX_SENDER", "email_domain", "sender_address", "sms_source"]


def sender_address(channel: int, raw: str) -> str:
    """The key a sender is registered under on its channel, or BadAddress."""
    if len(raw) > MAX_SENDER or "\x00" in raw:
        raise BadAddress(f"at most {MAX_SENDER} characters, no NUL")
    try:
        spec = channels.spec(channel)
    except channels.UnknownChannel:
        raise BadAddress("unknown channel") from None
    return spec.normalise_sender(raw)
