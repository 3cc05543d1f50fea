"""HERALD_* settings read only by the campaigns service."""

from shared.config import setting

SCHEDULER_INTERVAL = setting(
    "HERALD_SCHEDULER_INTERVAL", "0.2", "Seconds between scheduler/dispatcher ticks.", "campaigns"
)

DISPATCH_BATCH = setting(
    "HERALD_DISPATCH_BATCH",
    "500",
    "Jobs the dispatcher publishes per campaign per tick.",
    "campaigns",
)

JOB_TTL = setting(
    "HERALD_JOB_TTL",
    "86400",
    "Seconds after which an undelivered job is failed as EXPIRED.",
    "campaigns",
)

SCHEDULER_LEASE = setting(
    "HERALD_SCHEDULER_LEASE",
    "10",
    "Seconds a campaigns replica holds its lease on a campaign it acts on; another replica "
    "takes over after this when the holder dies.",
    "campaigns",
)

SCHEDULER_CLAIMS_PER_TICK = setting(
    "HERALD_SCHEDULER_CLAIMS_PER_TICK",
    "1",
    "Free campaigns a campaigns replica leases per tick at most (at least 1). Campaigns "
    "approved together are taken one at a time, so the replicas' ticks interleave and each "
    "gets some; replicas then settle on a fair share each (active campaigns divided by the "
    "replicas holding leases, rounded up), a replica over its share releasing the surplus "
    "(never a campaign being built). A lone replica takes every campaign.",
    "campaigns",
)

SCHEDULER_MAX_BUILDS = setting(
    "HERALD_SCHEDULER_MAX_BUILDS",
    "1",
    "Campaign builds one campaigns replica runs at once, beside its ticks (at least 1): a "
    "campaign being built never holds up the others' sending. A due campaign beyond this "
    "stays PENDING, its lease kept, until a build ends.",
    "campaigns",
)

SCHEDULER_MAX_LEASES = setting(
    "HERALD_SCHEDULER_MAX_LEASES",
    "0",
    "Most campaigns one campaigns replica leases at once (0: no limit but its fair share). "
    "With a limit, campaigns beyond replicas x limit wait, unleased, until a replica has "
    "room.",
    "campaigns",
)

AUTO_PAUSE_FAILURES = setting(
    "HERALD_AUTO_PAUSE_FAILURES",
    "5",
    "Pause a sending campaign after this many consecutive failed messages (a campaign's own "
    "auto_pause_failures overrides it; 0 disables).",
    "campaigns",
)

EXPORT_TTL = setting(
    "HERALD_EXPORT_TTL",
    "3600",
    "Seconds an export stays downloadable after it is built; then it expires and its file "
    "is dropped (create a new one).",
    "campaigns",
)

SMS_MAX_PARTS = setting(
    "HERALD_SMS_MAX_PARTS",
    "10",
    "Most parts an SMS campaign's text may take once rendered with sample values (GSM-7: 153 "
    "characters a part, UCS-2: 67); longer content is refused at create/update.",
    "campaigns",
)

EMAIL_MAX_BYTES = setting(
    "HERALD_EMAIL_MAX_BYTES",
    str(512 * 1024),
    "Most UTF-8 bytes of an email campaign's subject + text + html (each variant counted on "
    "its own); kept below the bus payload limit so every job can be published.",
    "campaigns",
)

ASSUMED_DELIVERED_AFTER = setting(
    "HERALD_ASSUMED_DELIVERED_AFTER",
    "172800",
    "Seconds an SMS may stay SUBMITTED in the ledger (no final receipt) before the scheduler "
    "reports it ASSUMED_DELIVERED (0 disables; a later receipt still moves it to DELIVERED or "
    "FAILED). Kept in SQL, so a Redis or gateway restart loses nothing.",
    "campaigns",
)

ASSUMED_DELIVERY_SWEEP = setting(
    "HERALD_ASSUMED_DELIVERY_SWEEP",
    "60",
    "Seconds between the scheduler's sweeps of the ledger for SMS due to be assumed delivered "
    "(a backlog larger than one sweep's share is worked off on the following ticks).",
    "campaigns",
)

LEDGER_ACK_WAIT = setting(
    "HERALD_LEDGER_ACK_WAIT",
    "60",
    "Seconds JetStream waits for the campaigns ledger to acknowledge a batch of events before "
    "redelivering it (after a crash of the campaigns process, how long until its events are "
    "applied by another replica or the restarted one). Applies when the durable consumer is "
    "created.",
    "campaigns",
)
