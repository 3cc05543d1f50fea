"""Address normalisation of the recipients service, through the channel registry: phones to
E.164 (libphonenumber), emails with email-validator (shared.channels.sms / .email).

Each function returns the normalised address or raises BadAddress with a reason."""

from __future__ import annotations

from shared import channels
from shared.channels.email import normalise_email
from shared.channels.sms import normalise_phone
from shared.channels.spec import MAX_INPUT

BadAddress = channels.AddressError

__all__ = ["MAX_INPUT", "BadAddress", "address_noun", "match_key", "normalise", "normalise_email",
           "normalise_phone"]


def normalise(channel: int, raw: str) -> str:
    try:
        spec = channels.spec(channel)
    except channels.UnknownChannel:
        raise BadAddress("unknown channel") from None
    return spec.normalise_address(raw)


def match_key(channel: int, address: str) -> str:
    """Key for de-duplication and the suppression list (emails compare case-insensitively)."""
    return channels.spec(channel).match_key(address)


def address_noun(channel: int) -> str:
    return channels.spec(channel).address_noun
