"""HERALD_* settings read by the recipients service (documented in shared.config.REGISTRY)."""

from __future__ import annotations

from shared.channels.sms import DEFAULT_REGION, TEST_NUMBERS  # declared with the SMS channel
from shared.config import setting

__all__ = ["AUDIENCE_CHUNK", "DEFAULT_REGION", "IMPORT_BATCH", "IMPORT_WORKERS", "MAX_UPSERT", "TEST_NUMBERS"]

AUDIENCE_CHUNK = setting(
    "HERALD_RECIPIENTS_AUDIENCE_CHUNK", "5000",
    "Contacts ResolveAudience reads from the database per query while streaming.",
    "recipients",
)
MAX_UPSERT = setting(
    "HERALD_RECIPIENTS_MAX_UPSERT", "10000", "Most contacts one UpsertContacts call may carry.",
    "recipients",
)
IMPORT_BATCH = setting(
    "HERALD_RECIPIENTS_IMPORT_BATCH", "5000",
    "Rows ImportContacts validates and writes per database transaction (the service holds at "
    "most about two such batches of one import in memory).",
    "recipients",
)
IMPORT_WORKERS = setting(
    "HERALD_RECIPIENTS_IMPORT_WORKERS", "-1",
    "Processes that validate ImportContacts rows (address normalisation is most of an "
    "import's CPU) while the service writes: -1 = one per CPU core, at most 4; 0 = none (rows "
    "are validated in a thread of the service). Started at the first import.",
    "recipients",
)
