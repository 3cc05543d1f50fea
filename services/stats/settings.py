"""HERALD_* settings read by the stats service (documented in shared.config.REGISTRY).
It also reads shared.config.CAMPAIGNS_ADDR (HERALD_CAMPAIGNS_ADDR): CampaignService, asked
whether a campaign the stats have no events for exists in the caller's workspace."""

from __future__ import annotations

from shared.config import setting

PREFIX = setting(
    "HERALD_STATS_PREFIX", "herald:stats:",
    "Prefix of every Redis key the stats service writes (lets several stacks or tests share "
    "one Redis).",
    "stats",
)
MESSAGE_TTL = setting(
    "HERALD_STATS_MESSAGE_TTL", "2592000",
    "Seconds the per-message state (last status, flags, views/clicks/replies) is kept after "
    "its last event; an event arriving later counts the message as new.",
    "stats",
)
EVENT_TTL = setting(
    "HERALD_STATS_EVENT_TTL", "691200",
    "Seconds an open/click/reply event_id is remembered for de-duplication (keep it above "
    "the EVENTS stream's max age of 7 days so a redelivery can never count twice).",
    "stats",
)
DAILY_TTL = setting(
    "HERALD_STATS_DAILY_TTL", "34560000",
    "Seconds the per-campaign per-day activity counters are kept (default 400 days).",
    "stats",
)
BATCH = setting(
    "HERALD_STATS_BATCH", "64",
    "Bus messages fetched at once (each a single event or a batch of up to "
    "HERALD_EVENT_BATCH_MAX, so up to 16,384 events in memory at the defaults); Redis applies "
    "their events in script calls of at most 200 events.",
    "stats",
)
DURABLE = setting(
    "HERALD_STATS_DURABLE", "stats",
    "Name of the durable JetStream consumer on EVENTS (every stats pod shares it).",
    "stats",
)
REBUILD_PAGE = setting(
    "HERALD_STATS_REBUILD_PAGE", "1000",
    "Messages read per CampaignService.ListMessages page by RebuildCampaignStats (at most "
    "1000, the service's cap).",
    "stats",
)
REBUILD_CATCHUP_TIMEOUT = setting(
    "HERALD_STATS_REBUILD_CATCHUP_TIMEOUT", "30",
    "Seconds RebuildCampaignStats waits, per ledger page, for the stats consumer to apply the "
    "message events already on the bus (so none is counted twice); when it is further behind "
    "the rebuild ends UNAVAILABLE and can be retried.",
    "stats",
)

ACK_WAIT = setting(
    "HERALD_STATS_ACK_WAIT", "30",
    "Seconds JetStream waits for the stats consumer to acknowledge a batch of events before "
    "redelivering it (after a crash of the stats process, how long until its events are "
    "applied). Applies when the durable consumer is created.", "stats",
)
