"""The 0001 -> 0002 upgrade keeps existing data and fills what the new features read:
the custom field names of existing contacts and the kind of existing suppressions."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

from alembic import command
from sqlalchemy import text

from services.recipients.store import Store
from shared import db

MIGRATIONS = os.path.join(os.path.dirname(__file__), "../../services/recipients/migrations")


async def test_upgrade_backfills_field_names_and_suppression_kinds(fresh_db_url: str) -> None:
    cfg = db.alembic_config(MIGRATIONS, fresh_db_url)
    await asyncio.to_thread(command.upgrade, cfg, "0001")
    engine = db.make_engine(fresh_db_url)
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO contacts (id, workspace_id, first_name, last_name, fields, created_at, "
            "updated_at) VALUES (:id, :ws, '', '', :f, :t, :t)"), [
            {"id": "00000000-0000-4000-8000-000000000001", "ws": "w1", "f": '{"city": "Leeds"}',
             "t": now},
            {"id": "00000000-0000-4000-8000-000000000002", "ws": "w1", "f": '{"tier": "gold"}',
             "t": now},
            {"id": "00000000-0000-4000-8000-000000000003", "ws": "w2", "f": "{}", "t": now}])
        await conn.execute(text(
            "INSERT INTO suppressions (workspace_id, channel, address, reason, source, created_at) "
            "VALUES ('w1', 2, :a, :r, :s, :t)"), [
            {"a": "b@example.com", "r": "bounced: 5.1.1", "s": "event", "t": now},
            {"a": "o@example.com", "r": "opted_out: STOP", "s": "event", "t": now},
            {"a": "c@example.com", "r": "complained", "s": "event", "t": now},
            {"a": "m@example.com", "r": "asked by phone", "s": "api", "t": now}])
    await engine.dispose()

    await db.migrate(MIGRATIONS, fresh_db_url)
    engine = db.make_engine(fresh_db_url)
    store = Store(engine)
    assert await store.field_names("w1", 100) == ["city", "tier"]
    assert await store.field_names("w2", 100) == []
    found = await store.suppressed("w1", 2, ["b@example.com", "o@example.com", "c@example.com",
                                             "m@example.com"])
    assert {k: v[0] for k, v in found.items()} == {
        "b@example.com": "bounced", "o@example.com": "opted_out", "c@example.com": "complained",
        "m@example.com": "manual"}
    contact = await store.get_contact("w1", "00000000-0000-4000-8000-000000000001")
    assert contact is not None and contact["language"] == ""
    await engine.dispose()
