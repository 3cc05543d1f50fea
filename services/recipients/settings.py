"""HERALD_* settings read by the recipients service (documented in shared.config.REGISTRY)."""

from __future__ import annotations

from shared.config import setting

DEFAULT_REGION = setting(
    "HERALD_DEFAULT_REGION", "GB",
    "ISO 3166 region used to read phone numbers written without a +country prefix "
    "(e.g. 07700 900123 -> +447700900123).",
    "recipients",
)
TEST_NUMBERS = setting(
    "HERALD_RECIPIENTS_TEST_NUMBERS", r"^\+447700900\d{3}$",
    "Regular expression of E.164 numbers accepted although libphonenumber marks them "
    "unassigned (default: Ofcom's fictional +44 7700 900xxx range, used by tests and demos). "
    "Empty = accept only assigned numbers.",
    "recipients",
)
AUDIENCE_CHUNK = setting(
    "HERALD_RECIPIENTS_AUDIENCE_CHUNK", "1000",
    "Contacts ResolveAudience reads from the database per query while streaming.",
    "recipients",
)
MAX_UPSERT = setting(
    "HERALD_RECIPIENTS_MAX_UPSERT", "10000", "Most contacts one UpsertContacts call may carry.",
    "recipients",
)
