"""Campaigns SQL schema (SQLAlchemy Core). Migrations in ./migrations mirror this."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    func,
    literal_column,
)

metadata = MetaData()

campaigns = Table(
    "campaigns", metadata,
    Column("id", String(36), primary_key=True),
    Column("workspace_id", String(64), nullable=False),
    Column("name", String(200), nullable=False, server_default=""),
    Column("channel", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("mode", Integer, nullable=False),
    Column("sender", String(200), nullable=False, server_default=""),
    Column("author", String(200), nullable=False, server_default=""),
    Column("content_text", Text, nullable=False, server_default=""),
    Column("content_subject", Text, nullable=False, server_default=""),
    Column("content_html", Text, nullable=False, server_default=""),
    Column("template_name", String(200), nullable=False, server_default=""),
    Column("category_ids", JSON, nullable=False),
    Column("start_at", DateTime(timezone=True)),
    Column("end_at", DateTime(timezone=True)),
    Column("auto_start", Boolean, nullable=False, server_default="0"),
    Column("moderation", Integer, nullable=False),
    Column("moderation_note", Text, nullable=False, server_default=""),
    Column("archived", Boolean, nullable=False, server_default="0"),
    Column("status_reason", Text, nullable=False, server_default=""),
    Column("recipients_count", Integer, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    Column("description", Text, nullable=False, server_default=""),
    # Daily sending window: "HH:MM" local times in an IANA zone; empty = always.
    Column("window_start", String(5), nullable=False, server_default=""),
    Column("window_end", String(5), nullable=False, server_default=""),
    Column("window_tz", String(64), nullable=False, server_default=""),
    Column("max_rate", Float, nullable=False, server_default="0"),
    Column("auto_pause_failures", Integer, nullable=False, server_default="0"),
    # Why a campaign is PAUSED: operator | window | failures (only "window" resumes by itself).
    Column("paused_by", String(16), nullable=False, server_default=""),
    # Consecutive-failure counting starts after this (set on resume).
    Column("failures_reset_at", DateTime(timezone=True)),
    # Scheduler lease: the replica acting on this campaign until lease_until.
    Column("lease_owner", String(64), nullable=False, server_default=""),
    Column("lease_until", DateTime(timezone=True)),
    # A/B: [{"name", "split_percent", "content": {text, subject, html, template_name}}]
    Column("variants", JSON),
    Column("test_percent", Integer, nullable=False, server_default="0"),
    Column("winner", String(64), nullable=False, server_default=""),
    Index("ix_campaigns_ws_created", "workspace_id", "created_at"),
    Index("ix_campaigns_status", "status"),
)

# Inline recipients given at creation, kept until the campaign is built.
campaign_targets = Table(
    "campaign_targets", metadata,
    Column("campaign_id", String(36), primary_key=True),
    Column("idx", Integer, primary_key=True),
    Column("recipient", LargeBinary, nullable=False),  # serialised herald.v1.Recipient
)

state_history = Table(
    "state_history", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign_id", String(36), nullable=False, index=True),
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=False, server_default=""),
    Column("actor", String(200), nullable=False, server_default=""),
    Column("at", DateTime(timezone=True), nullable=False),
)

# The ledger of record: one row per recipient per channel.
messages = Table(
    "messages", metadata,
    Column("id", String(36), primary_key=True),
    Column("campaign_id", String(36), nullable=False),
    Column("workspace_id", String(64), nullable=False),
    Column("contact_id", String(64), nullable=False, server_default=""),
    Column("contact_name", String(400), nullable=False, server_default=""),
    Column("address", String(320), nullable=False),
    Column("channel", Integer, nullable=False),
    Column("status", Integer, nullable=False),
    Column("status_rank", Integer, nullable=False),
    Column("carrier_result", String(16), nullable=False, server_default=""),
    Column("error_code", String(32), nullable=False, server_default=""),
    Column("error_description", Text, nullable=False, server_default=""),
    Column("failure_category", Integer, nullable=False, server_default="0"),
    Column("provider_message_id", String(200), nullable=False, server_default=""),
    Column("attempt", Integer, nullable=False, server_default="1"),
    Column("variant", String(32), nullable=False, server_default=""),
    Column("content_preview", String(100), nullable=False, server_default=""),
    Column("fields", JSON, nullable=False),
    Column("views", Integer, nullable=False, server_default="0"),
    Column("clicks", Integer, nullable=False, server_default="0"),
    Column("replies", Integer, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("dispatched_at", DateTime(timezone=True)),
    Column("sent_at", DateTime(timezone=True)),
    Column("delivered_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True)),  # time of the last status change
    Column("held", Boolean, nullable=False, server_default="0"),  # A/B: waits for the winner
    Column("route", String(64), nullable=False, server_default=""),
    # Covers GetCampaign's progress, daily activity and held count (repo.messages.overview)
    # and serves every (campaign_id, status) lookup.
    Index("ix_messages_campaign_overview", "campaign_id", "status", "held", "dispatched_at", "sent_at",
          "updated_at"),
    Index("ix_messages_dispatch_order", "campaign_id", "dispatched_at", "created_at", "id"),
    Index("ix_messages_campaign_updated", "campaign_id", "updated_at"),
)

# A receipt's id as the ledger looks it up: SMSCs change the id's case and leading zeros
# between submit_sm_resp and the receipt. The '0' is a literal, not a bound parameter, so the
# query's expression is the index's own (SQLite matches index expressions textually).
PROVIDER_KEY = func.lower(func.ltrim(messages.c.provider_message_id, literal_column("'0'")))
Index("ix_messages_provider_key", PROVIDER_KEY)

# Who did what to a campaign. Kept after a campaign is deleted.
audit_events = Table(
    "audit_events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign_id", String(36), nullable=False, index=True),
    Column("workspace_id", String(64), nullable=False),
    Column("action", String(32), nullable=False),
    Column("actor", String(200), nullable=False, server_default=""),
    Column("note", Text, nullable=False, server_default=""),
    Column("before", JSON, nullable=False),
    Column("after", JSON, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

exports = Table(
    "exports", metadata,
    Column("id", String(36), primary_key=True),
    Column("campaign_id", String(36), nullable=False, index=True),
    Column("workspace_id", String(64), nullable=False),
    Column("format", Integer, nullable=False),
    Column("filter", Text, nullable=False, server_default=""),
    Column("status", Integer, nullable=False),
    Column("rows", Integer, nullable=False, server_default="0"),
    Column("content", LargeBinary),
    Column("error", Text, nullable=False, server_default=""),
    Column("author", String(200), nullable=False, server_default=""),
    Column("pii", Boolean, nullable=False, server_default="0"),  # the author's right at creation
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("expires_at", DateTime(timezone=True)),
)

# Workflow / infrastructure errors of a campaign (the Errors tab, "Job").
job_errors = Table(
    "job_errors", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("campaign_id", String(36), nullable=False, index=True),
    Column("workspace_id", String(64), nullable=False),
    Column("stage", String(32), nullable=False),
    Column("message", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

# Inbound replies and click records, from the message events.
replies = Table(
    "replies", metadata,
    Column("event_id", String(64), primary_key=True),
    Column("message_id", String(36), nullable=False, index=True),
    Column("campaign_id", String(36), nullable=False, index=True),
    Column("from_address", String(320), nullable=False, server_default=""),
    Column("text", Text, nullable=False, server_default=""),
    Column("at", DateTime(timezone=True), nullable=False),
)

clicks = Table(
    "clicks", metadata,
    Column("event_id", String(64), primary_key=True),
    Column("message_id", String(36), nullable=False, index=True),
    Column("campaign_id", String(36), nullable=False, index=True),
    Column("link_index", Integer, nullable=False, server_default="0"),
    Column("url", Text, nullable=False, server_default=""),
    Column("at", DateTime(timezone=True), nullable=False),
)

# request_id replay: the first response of a mutating RPC, returned again on retry.
idempotency = Table(
    "idempotency", metadata,
    Column("workspace_id", String(64), primary_key=True),
    Column("method", String(64), primary_key=True),
    Column("request_id", String(128), primary_key=True),
    Column("response", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # shared.idempotency.fingerprint of the first call; NULL for rows older than the column.
    Column("fingerprint", String(64), nullable=True),
)

# Event ids already counted (opens/clicks/replies are counters, not states).
processed_events = Table(
    "processed_events", metadata,
    Column("event_id", String(64), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
)
