"""Campaigns SQL schema (SQLAlchemy Core). Migrations in ./migrations mirror this."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    event,
    func,
    literal_column,
    text,
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
    # A status filter's ListMessages pages (and export batches) in created order: the rows
    # come out in page order whatever the planner thinks of the status's frequency (migration
    # 0014). Its (campaign_id, status) prefix serves every status lookup of a campaign.
    Index("ix_messages_campaign_status_created", "campaign_id", "status", "created_at", "id"),
    # The messages still to hand to a gateway, in audience order (the dispatcher's next page).
    # Partial (migration 0017): on PostgreSQL a full index kept every dispatched row's entry
    # ahead of the waiting ones, and each page stepped over all of them (22 ms a page half-way
    # through 100,000 messages, growing with the campaign). Narrow on purpose: with the
    # statistics of a fresh build the planner tells it from (campaign_id, created_at, id)
    # only by its size.
    Index("ix_messages_waiting", "campaign_id", "created_at", "id",
          sqlite_where=text("dispatched_at IS NULL"), postgresql_where=text("dispatched_at IS NULL")),
    # ListMessages' keyset pages and an export's batches, in created order (migration 0013).
    Index("ix_messages_campaign_created", "campaign_id", "created_at", "id"),
    # The auto-pause check's latest final outcomes (repo.messages.last_outcomes). Only final
    # rows are in it (migration 0016), so a message's earlier events (queued, submitted) do
    # not move an index entry: the query repeats FINAL_OUTCOME literally for the planner.
    Index("ix_messages_campaign_outcomes", "campaign_id", "updated_at",
          sqlite_where=text("status_rank >= 4"), postgresql_where=text("status_rank >= 4")),
)
# The predicate of ix_messages_campaign_outcomes: status_rank of ASSUMED_DELIVERED and above
# (shared.states.RANK; a test checks they agree).
FINAL_OUTCOME = text("status_rank >= 4")

# A receipt's id as the ledger looks it up: SMSCs change the id's case and leading zeros
# between submit_sm_resp and the receipt. The '0' is a literal, not a bound parameter, so the
# query's expression is the index's own (SQLite matches index expressions textually).
PROVIDER_KEY = func.lower(func.ltrim(messages.c.provider_message_id, literal_column("'0'")))
# Only rows the carrier gave an id are in it (migration 0016): a build's rows are not, and a
# submission adds its entry instead of moving one. Lookups repeat HAS_PROVIDER_ID literally.
HAS_PROVIDER_ID = text("provider_message_id <> ''")
Index("ix_messages_provider_key_set", PROVIDER_KEY,
      sqlite_where=HAS_PROVIDER_ID, postgresql_where=HAS_PROVIDER_ID)

# A campaign's messages counted by what its progress and overview read (status, held, handed
# to the carrier, UTC day handed off), kept by triggers on every change of the ledger, so those
# reads cost O(statuses x days) rows instead of a pass over the campaign's ledger. `day` is ''
# for a message not dispatched (or without a time); `slot` spreads concurrent PostgreSQL
# writers of one campaign over several rows (summed at read); one slot (0) on SQLite, which
# has a single writer. Rows may hold negative or zero counts: only sums mean anything.
message_counts = Table(
    "message_counts", metadata,
    Column("campaign_id", String(36), primary_key=True),
    Column("status", Integer, primary_key=True),
    Column("held", Boolean, primary_key=True),
    Column("sent", Boolean, primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("slot", SmallInteger, primary_key=True),
    Column("n", BigInteger, nullable=False),
)

COUNT_SLOTS = 64  # PostgreSQL: slot = backend pid modulo this
_COUNT_COLS = "campaign_id, status, held, sent, day, slot, n"
_UPSERT = ("ON CONFLICT (campaign_id, status, held, sent, day, slot) "
           "DO UPDATE SET n = message_counts.n + excluded.n")


def count_day(dialect: str, r: str) -> str:
    """The counted day of ledger row `r` (SQL): the UTC day of coalesce(sent_at, updated_at)
    once dispatched, else ''."""
    when = f"coalesce({r}.sent_at, {r}.updated_at)"
    day = (f"to_char(timezone('UTC', {when}), 'YYYY-MM-DD')" if dialect == "postgresql"
           else f"substr({when}, 1, 10)")
    return f"CASE WHEN {r}.dispatched_at IS NULL THEN '' ELSE coalesce({day}, '') END"


def count_key(dialect: str, r: str) -> str:
    """The counted key of ledger row `r` (SQL): the definitions of the ledger scans in
    repo.messages (sent = sent_at set)."""
    return f"{r}.campaign_id, {r}.status, {r}.held, {r}.sent_at IS NOT NULL, {count_day(dialect, r)}"


def count_backfill(dialect: str, where: str = "TRUE") -> str:
    """Counts of the ledger's rows `m` matching `where`, as rows of message_counts (slot 0)."""
    return (f"INSERT INTO message_counts ({_COUNT_COLS}) SELECT {count_key(dialect, 'm')}, 0, count(*) "
            f"FROM messages m WHERE {where} GROUP BY 1, 2, 3, 4, 5")


def _sqlite_triggers() -> list[str]:
    """Row triggers (SQLite has no others): one upsert per changed row and side."""
    def upsert(r: str, n: int) -> str:
        return f"INSERT INTO message_counts ({_COUNT_COLS}) VALUES ({count_key('sqlite', r)}, 0, {n}) {_UPSERT};"
    # Only a change of the key moves a count: the ledger rewrites updated_at on every event.
    moved = " OR ".join((
        "OLD.campaign_id IS NOT NEW.campaign_id", "OLD.status IS NOT NEW.status", "OLD.held IS NOT NEW.held",
        "(OLD.sent_at IS NULL) <> (NEW.sent_at IS NULL)",
        f"({count_day('sqlite', 'OLD')}) IS NOT ({count_day('sqlite', 'NEW')})"))
    return [
        f"CREATE TRIGGER message_counts_ins AFTER INSERT ON messages BEGIN {upsert('NEW', 1)} END",
        "CREATE TRIGGER message_counts_upd AFTER UPDATE OF campaign_id, status, held, dispatched_at, sent_at, "
        f"updated_at ON messages WHEN {moved} BEGIN {upsert('OLD', -1)} {upsert('NEW', 1)} END",
        f"CREATE TRIGGER message_counts_del AFTER DELETE ON messages BEGIN {upsert('OLD', -1)} "
        "DELETE FROM message_counts WHERE campaign_id = OLD.campaign_id AND n = 0; END",
    ]


def _pg_triggers() -> list[str]:
    """Statement triggers over transition tables: a statement moving 500 rows does one upsert
    of its net changes per key, in key order (concurrent writers lock counter rows in one
    order). The slot is the backend's: two connections (ledger replicas, the dispatcher) of
    one campaign rarely wait for each other's counter rows."""
    out = []
    sides = {"ins": [("new_rows", 1)], "upd": [("old_rows", -1), ("new_rows", 1)], "del": [("old_rows", -1)]}
    ops = {"ins": "INSERT", "upd": "UPDATE", "del": "DELETE"}
    refs = {"ins": "NEW TABLE AS new_rows", "upd": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
            "del": "OLD TABLE AS old_rows"}
    for op, parts in sides.items():
        deltas = " UNION ALL ".join(f"SELECT {count_key('postgresql', 'r')}, {d} FROM {t} r" for t, d in parts)
        body = (f"INSERT INTO message_counts ({_COUNT_COLS}) SELECT campaign_id, status, held, sent, day, "
                f"(pg_backend_pid() % {COUNT_SLOTS})::smallint, sum(d) FROM ({deltas}) "
                "AS x(campaign_id, status, held, sent, day, d) GROUP BY 1, 2, 3, 4, 5 HAVING sum(d) <> 0 "
                f"ORDER BY 1, 2, 3, 4, 5 {_UPSERT};")
        if op == "del":  # a deleted campaign leaves no rows behind
            body += (" DELETE FROM message_counts WHERE n = 0 AND campaign_id IN "
                     "(SELECT DISTINCT campaign_id FROM old_rows);")
        out += [f"CREATE OR REPLACE FUNCTION message_counts_{op}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                f"BEGIN {body} RETURN NULL; END $$",
                f"CREATE TRIGGER message_counts_{op} AFTER {ops[op]} ON messages REFERENCING {refs[op]} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION message_counts_{op}()"]
    return out


def count_triggers(dialect: str) -> list[str]:
    """The DDL keeping message_counts equal to the ledger, for this dialect."""
    return _pg_triggers() if dialect == "postgresql" else _sqlite_triggers()


def drop_count_triggers(dialect: str) -> list[str]:
    if dialect == "postgresql":
        return [s for op in ("ins", "upd", "del") for s in (
            f"DROP TRIGGER IF EXISTS message_counts_{op} ON messages",
            f"DROP FUNCTION IF EXISTS message_counts_{op}()")]
    return [f"DROP TRIGGER IF EXISTS message_counts_{op}" for op in ("ins", "upd", "del")]


@event.listens_for(metadata, "after_create")
def _create_count_triggers(_target: MetaData, connection, **_kw) -> None:  # type: ignore[no-untyped-def]
    """metadata.create_all (tests, tools) builds the triggers too; migrations create them in
    0011."""
    for ddl in count_triggers(connection.dialect.name):
        connection.execute(text(ddl))


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
    # The build's lease (migration 0015): the replica building a RUNNING export renews
    # lease_until as it writes chunks; one whose lease ran out (or that has none) is taken over.
    Column("lease_owner", String(200), nullable=False, server_default=""),
    Column("lease_until", DateTime(timezone=True)),
    # Builds started: a take-over adds one, a build given back at a clean stop does not count.
    Column("attempts", Integer, nullable=False, server_default="0"),
)

# An export's file in order (seq from 0: the header, then one chunk per batch of rows),
# so neither building nor downloading holds the whole file; exports built before keep
# theirs in exports.content.
export_chunks = Table(
    "export_chunks", metadata,
    Column("export_id", String(36), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("data", LargeBinary, nullable=False),
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
