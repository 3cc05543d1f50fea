"""The build's message ids stay uuid5(NS, "campaign:channel:address"): a resumed build (and an
upgraded one) finds the rows an earlier build wrote by them."""

from __future__ import annotations

import uuid

from services.campaigns.scheduler.content import NS, message_id


def test_message_ids_are_uuid5_of_campaign_channel_and_address() -> None:
    for campaign, channel, address in [("c0f1e2d3-aaaa-bbbb-cccc-1234567890ab", 1, "+447700900123"),
                                       ("cp", 2, "ann@example.com"), ("cp", 2, "zoë@exämple.com"),
                                       ("cp", 1, ""), ("cp", 3, "contact:c-1")]:
        assert message_id(campaign, channel, address) == str(uuid.uuid5(NS, f"{campaign}:{channel}:{address}"))
