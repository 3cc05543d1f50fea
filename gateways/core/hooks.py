"""A channel's optional members (channel.ChannelHooks), or the runtime's defaults."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from gateways.core.channel import Channel, Job
from gateways.core.events import stable_event_id
from gateways.core.outcome import Outcome, abandoned, failed

F = c.FailureCategory


class Hooks:
    __slots__ = ("channel", "abandon_event", "event_id", "expired", "abandoned", "record",
                 "recorded")

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.abandon_event: str = getattr(channel, "abandon_event", f"{channel.name} jobs abandoned")
        self.event_id: Callable[[str], str] = getattr(channel, "event_id", stable_event_id)
        self.expired: Callable[[e.MessageJob], Outcome] = getattr(channel, "expired", _expired)
        self.abandoned: Callable[[e.MessageJob, str], Outcome] = getattr(
            channel, "abandoned", self._abandoned)
        self.record: Callable[[Sequence[Job]], Awaitable[Any]] | None = getattr(
            channel, "record", None)
        self.recorded: Callable[[Sequence[Job], bool], None] | None = getattr(
            channel, "recorded", None)

    def _abandoned(self, job: e.MessageJob, reason: str) -> Outcome:
        return abandoned(self.channel.abandon_meaning(reason), self.channel.carrier)


def _expired(job: e.MessageJob) -> Outcome:
    return failed("job expired before it could be sent", F.FAILURE_CATEGORY_EXPIRED)
