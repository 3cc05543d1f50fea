"""Export.status_detail explains every status a user can see, including a build that
stopped (its lease ran out) and one restarted after interruptions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from herald.v1 import campaigns_pb2 as pb

from services.campaigns.exports import status_detail

NOW = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


def row(**kw: Any) -> dict[str, Any]:
    return {"attempts": 1, "rows": 0, "lease_until": None, "expires_at": None, "error": "", **kw}


def test_queued() -> None:
    assert status_detail(row(attempts=0), pb.EXPORT_STATUS_QUEUED, NOW) == (
        "waiting for a campaigns replica to build it")
    assert "1 earlier build(s) interrupted" in status_detail(row(), pb.EXPORT_STATUS_QUEUED, NOW)


def test_running_live_and_restarted() -> None:
    live = row(rows=10, lease_until=NOW + timedelta(seconds=5))
    assert status_detail(live, pb.EXPORT_STATUS_RUNNING, NOW) == (
        "being built: 10 rows written (attempt 1 of 3)")
    assert status_detail({**live, "attempts": 2}, pb.EXPORT_STATUS_RUNNING, NOW) == (
        "being built again after 1 interrupted build(s): 10 rows written (attempt 2 of 3)")


def test_running_with_a_dead_builder() -> None:
    stale = row(lease_until=NOW - timedelta(seconds=1))
    text = status_detail(stale, pb.EXPORT_STATUS_RUNNING, NOW)
    assert "has not renewed its lease since 2026-01-10T11:59:59+00:00" in text
    assert text.endswith("another replica builds it again shortly (attempt 2 of 3)")
    assert status_detail({**stale, "attempts": 3}, pb.EXPORT_STATUS_RUNNING, NOW).endswith(
        "it was interrupted 3 times and is marked FAILED shortly")
    assert "has not renewed its lease);" in status_detail(row(), pb.EXPORT_STATUS_RUNNING, NOW)


def test_finished() -> None:
    until = NOW + timedelta(hours=1)
    assert status_detail(row(rows=5, expires_at=until), pb.EXPORT_STATUS_DONE, NOW) == (
        "ready: 5 rows, downloadable until 2026-01-10T13:00:00+00:00")
    assert status_detail(row(expires_at=NOW), pb.EXPORT_STATUS_EXPIRED, NOW).endswith(
        "create the export again")
    assert status_detail(row(error="boom"), pb.EXPORT_STATUS_FAILED, NOW) == "failed: boom"
