"""Tables of the recipients service (SQLite and PostgreSQL alike).

The idempotency table is named recipients_idempotency because services may share one
PostgreSQL database and campaigns already owns a table called idempotency."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

contacts = Table(
    "contacts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("workspace_id", String(64), nullable=False),
    Column("external_id", String(200), nullable=True),
    Column("phone", String(32), nullable=True),  # E.164
    Column("email", String(320), nullable=True),  # domain lower-cased
    Column("first_name", String(200), nullable=False, server_default=""),
    Column("last_name", String(200), nullable=False, server_default=""),
    Column("fields", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("language", String(35), nullable=False, server_default=""),  # BCP 47 tag
    UniqueConstraint("workspace_id", "external_id", name="uq_contacts_ws_external"),
    Index("ix_contacts_ws_phone", "workspace_id", "phone"),
    Index("ix_contacts_ws_email", "workspace_id", "email"),
    Index("ix_contacts_ws_created", "workspace_id", "created_at", "id"),
)

categories = Table(
    "categories",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("workspace_id", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("workspace_id", "name", name="uq_categories_ws_name"),
)

contact_categories = Table(
    "contact_categories",
    metadata,
    Column("contact_id", String(36), ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("category_id", String(36), ForeignKey("categories.id", ondelete="CASCADE"),
           nullable=False),
    PrimaryKeyConstraint("contact_id", "category_id"),
    # ResolveAudience walks a category's members in contact id order.
    Index("ix_contact_categories_category", "category_id", "contact_id"),
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("workspace_id", String(64), nullable=False),
    Column("channel", Integer, nullable=False),
    Column("address", String(320), nullable=False),  # normalise.match_key of the address
    Column("reason", Text, nullable=False, server_default=""),
    Column("source", String(16), nullable=False, server_default="api"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Why the address is suppressed (opted_out, bounced, complained, manual): the audience's
    # rejection wording and category follow it.
    Column("kind", String(16), nullable=False, server_default="manual"),
    # Opaque id (UUID): RemoveSuppression names an entry by it when the caller sees only a
    # masked phone number.
    Column("id", String(36), nullable=False),
    PrimaryKeyConstraint("workspace_id", "channel", "address"),
    Index("uq_suppressions_id", "id", unique=True),
)

# Sender ids belong to one workspace: the primary key is the address alone (per channel), so
# two workspaces can never hold the same one.
senders = Table(
    "senders",
    metadata,
    Column("channel", Integer, nullable=False),
    Column("address", String(320), nullable=False),  # SMS source address / email From domain
    Column("workspace_id", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("channel", "address"),
    Index("ix_senders_ws", "workspace_id", "channel", "address"),
)

# Custom field names ever carried by a workspace's contacts, kept at UpsertContacts: the
# template variables ValidateTargets reports, without scanning JSON columns.
contact_field_names = Table(
    "contact_field_names",
    metadata,
    Column("workspace_id", String(64), nullable=False),
    Column("name", String(128), nullable=False),
    PrimaryKeyConstraint("workspace_id", "name"),
)

idempotency = Table(
    "recipients_idempotency",
    metadata,
    Column("workspace_id", String(64), nullable=False),
    Column("method", String(64), nullable=False),
    Column("request_id", String(128), nullable=False),
    Column("response", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # shared.idempotency.fingerprint of the first call: a reuse with another body is refused.
    Column("fingerprint", String(64), nullable=True),
    PrimaryKeyConstraint("workspace_id", "method", "request_id"),
)
