"""What a channel is to the services: one ChannelSpec per channel, asked instead of branching
on channel names (address validation, masking, content of its jobs, when a message is final)."""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.message import Message
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

MAX_INPUT = 320  # longer than any address (RFC 5321 paths are at most 256 octets)
MAX_SENDER = 320


class AddressError(ValueError):
    """An address (or sender id) this channel cannot use; str() is the reason."""


class UnknownChannel(LookupError):
    pass


def checked_input(raw: str) -> str:
    """The stripped input, or AddressError for empty and over-long values."""
    text = raw.strip()
    if not text:
        raise AddressError("is empty")
    if len(text) > MAX_INPUT:
        raise AddressError(f"is longer than {MAX_INPUT} characters")
    return text


class ChannelSpec:
    channel: int  # herald.v1.Channel value
    name: str  # "sms": metric labels, CLI words, filters
    label: str  # "SMS": in sentences ("an SMS campaign")
    label_article: str = "a"
    subject: str  # JetStream subject of its jobs
    address_kind: str  # "phone", "email", ...
    address_noun: str  # "phone number": in reasons shown to users
    address_article: str = "a"
    address_field: str  # where a Recipient carries the address (violation field paths)
    content_fields: tuple[str, ...]  # campaign Content fields its jobs carry
    final_statuses: frozenset[int]  # statuses a message of this channel ends in

    def normalise_address(self, raw: str) -> str:
        """The canonical form of an address, or AddressError(reason)."""
        raise NotImplementedError

    def normalise_reported(self, raw: str) -> str:
        """An address as a carrier or an inbound event reports it."""
        return self.normalise_address(raw)

    def normalise_sender(self, raw: str) -> str:
        """The key a sender id is registered under on this channel, or AddressError."""
        raise NotImplementedError

    def match_key(self, address: str) -> str:
        """Key for de-duplication and the suppression list."""
        return address

    def mask(self, address: str, pii: bool) -> str:
        """The address as a caller without (or with) PII rights may see it."""
        return address

    def address_of(self, recipient: c.Recipient) -> str:
        return str(getattr(recipient, self.address_field))

    def set_address(self, recipient: c.Recipient, address: str) -> None:
        setattr(recipient, self.address_field, address)

    def content(self, job: e.MessageJob) -> Message:
        """The job's content message of this channel (empty if it carries none)."""
        raise NotImplementedError

    def set_content(self, job: e.MessageJob, fields: Mapping[str, str]) -> None:
        """Fills the job's content oneof from campaign Content fields (content_fields)."""
        raise NotImplementedError

    def content_values(self, job: e.MessageJob) -> dict[str, str]:
        """The job's content by campaign Content field name (set_content's inverse)."""
        got = self.content(job)
        return {f: getattr(got, f) for f in self.content_fields}

    def an_address(self) -> str:
        """"a phone number", "an email address": in reasons shown to users."""
        return f"{self.address_article} {self.address_noun}"

    def is_final(self, status: int) -> bool:
        return status in self.final_statuses

    def __repr__(self) -> str:
        return f"<channel {self.name}>"
