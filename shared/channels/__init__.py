"""The channel registry: what each channel is to the services, asked by channel number.

    spec(c.CHANNEL_SMS).normalise_address("07700 900123")  # "+447700900123"

A new channel is one module here defining a ChannelSpec, plus one entry in _SPECS.
Jobs queued before MessageJob.content existed carry their templates in the deprecated flat
fields (text, subject, html); sms_content/email_content fall back to them, so an upgrade
never strands queued jobs.
"""

from __future__ import annotations

from shared.channels import email, postback, sms
from shared.channels.email import email_content
from shared.channels.sms import sms_content
from shared.channels.spec import AddressError, ChannelSpec, UnknownChannel

__all__ = ["AddressError", "ChannelSpec", "UnknownChannel", "by_name", "email_content",
           "known", "sms_content", "spec", "specs"]

_SPECS: dict[int, ChannelSpec] = {s.channel: s for s in (sms.SPEC, email.SPEC, postback.SPEC)}
_BY_NAME: dict[str, ChannelSpec] = {s.name: s for s in _SPECS.values()}


def spec(channel: int) -> ChannelSpec:
    try:
        return _SPECS[channel]
    except KeyError:
        raise UnknownChannel(f"unknown channel {channel}") from None


def specs() -> tuple[ChannelSpec, ...]:
    """Every registered channel, in channel-number order."""
    return tuple(_SPECS[k] for k in sorted(_SPECS))


def known(channel: int) -> bool:
    return channel in _SPECS


def by_name(name: str) -> ChannelSpec:
    """"sms", "SMS" or "CHANNEL_SMS"; UnknownChannel otherwise."""
    key = name.strip().lower().removeprefix("channel_")
    try:
        return _BY_NAME[key]
    except KeyError:
        raise UnknownChannel(f"unknown channel {name!r}") from None
