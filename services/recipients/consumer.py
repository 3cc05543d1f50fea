"""Suppression list fed by the bus: opt-outs, hard bounces and complaints on
events.contact.> (durable consumer "recipients" on EVENTS).

An event suppresses the address in its own workspace_id only: the gateway sets it from the
message the STOP, reply or bounce answers, so one workspace's opt-out never blocks another
workspace's messages to the same person."""

from __future__ import annotations

import logging

from herald.v1 import events_pb2 as e

from services.recipients.metrics import SUPPRESSIONS_ADDED
from services.recipients.normalize import BadAddress, match_key
from services.recipients.store import Store
from shared import bus, channels
from shared.jsfast import JsMsg

log = logging.getLogger("herald.recipients.consumer")

MAX_WORKSPACE = 64
MAX_REASON = 500
DURABLE = "recipients"
SUBJECT = "events.contact.>"
SUPPRESSING = {
    e.CONTACT_EVENT_KIND_OPTED_OUT: "opted_out",
    e.CONTACT_EVENT_KIND_BOUNCED: "bounced",
    e.CONTACT_EVENT_KIND_COMPLAINED: "complained",
}


def event_address(channel: int, raw: str) -> str:
    """The address an event names, as its channel reports addresses (an SMSC may drop the
    "+" of an international number)."""
    return channels.spec(channel).normalise_reported(raw)


class ContactEventConsumer:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def handle(self, msg: JsMsg) -> None:
        """One event (shared.consumer.per_message: PermanentError terminates it)."""
        ev = bus.parse(msg, e.ContactEvent)
        kind = SUPPRESSING.get(ev.kind)
        if kind is None:
            return
        if not ev.workspace_id or not channels.known(ev.channel) or not ev.address:
            raise bus.PermanentError(f"contact event {ev.event_id} lacks workspace, channel or address")
        if len(ev.workspace_id) > MAX_WORKSPACE or "\x00" in ev.workspace_id:
            raise bus.PermanentError(f"contact event {ev.event_id} has a malformed workspace id")
        try:
            address = event_address(ev.channel, ev.address)
        except BadAddress as exc:
            # Nothing to suppress: an invalid address is rejected by ResolveAudience anyway.
            log.warning("contact event with an invalid address ignored",
                        extra={"event_id": ev.event_id, "reason": str(exc)})
            return
        detail = ev.reason.replace("\x00", "")[:MAX_REASON]
        reason = f"{kind}: {detail}" if detail else kind
        async with self.store.write() as conn:
            _, added = await self.store.add_suppression(
                conn, ev.workspace_id, ev.channel, match_key(ev.channel, address), reason, "event",
                kind)
        if added:
            SUPPRESSIONS_ADDED.labels("event").inc()
            log.info("suppression added", extra={"workspace": ev.workspace_id, "kind": kind,
                                                 "event_id": ev.event_id})
