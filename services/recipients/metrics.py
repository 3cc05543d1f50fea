"""Prometheus counters of the recipients service (no address or id labels)."""

from __future__ import annotations

from prometheus_client import Counter

CONTACTS_UPSERTED = Counter(
    "herald_recipients_contacts_upserted_total",
    "Contact rows handled by UpsertContacts, by result (created, updated, rejected).",
    ["result"],
)
CONTACTS_IMPORTED = Counter(
    "herald_recipients_contacts_imported_total",
    "Contact rows handled by ImportContacts, by result (created, updated, unchanged, rejected).",
    ["result"],
)
AUDIENCE_MEMBERS = Counter(
    "herald_recipients_audience_members_total",
    "Audience members streamed by ResolveAudience, by result "
    "(accepted, invalid_address, unsubscribed = opted out, complained or suppressed by hand, "
    "bounced = a hard bounce on the suppression list).",
    ["result"],
)
SUPPRESSIONS_ADDED = Counter(
    "herald_recipients_suppressions_added_total",
    "New suppression list entries, by source (api, event).",
    ["source"],
)
SUPPRESSIONS_REMOVED = Counter(
    "herald_recipients_suppressions_removed_total",
    "Suppression list entries removed with RemoveSuppression, by kind (manual, opted_out, "
    "bounced, complained).",
    ["kind"],
)
