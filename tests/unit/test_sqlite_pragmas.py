"""SQLite connections get the page cache HERALD_SQLITE_CACHE_MIB asks for (SQLite's own
default of 2 MiB made the ledger re-read its index pages on every batch)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from shared import db


async def _pragma(url: str, name: str) -> object:
    engine = db.make_engine(url)
    try:
        async with engine.connect() as conn:
            return (await conn.execute(text(f"PRAGMA {name}"))).scalar_one()
    finally:
        await engine.dispose()


async def test_cache_defaults_to_16_mib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HERALD_SQLITE_CACHE_MIB", raising=False)
    assert await _pragma(f"sqlite+aiosqlite:///{tmp_path}/a.db", "cache_size") == -16 * 1024
    assert await _pragma(f"sqlite+aiosqlite:///{tmp_path}/a.db", "journal_mode") == "wal"


async def test_cache_follows_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_SQLITE_CACHE_MIB", "40")
    assert await _pragma(f"sqlite+aiosqlite:///{tmp_path}/b.db", "cache_size") == -40 * 1024


def test_a_bad_value_names_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_SQLITE_CACHE_MIB", "lots")
    with pytest.raises(ValueError, match="HERALD_SQLITE_CACHE_MIB"):
        db.make_engine(f"sqlite+aiosqlite:///{tmp_path}/c.db")
