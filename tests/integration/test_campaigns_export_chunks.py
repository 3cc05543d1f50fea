"""An export is built in keyset batches and stored as chunks (header, then one chunk per
batch), and DownloadExport streams them: the file is byte-identical to a single-pass render
of the same rows, masked the same way; exports stored as one blob still download; a failed
build leaves no chunks; expiry drops them. Both backends, real gRPC."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import grpc
import pytest
from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from sqlalchemy import func, insert, select

from services.campaigns import exports
from services.campaigns.filters import message_filter
from services.campaigns.repo import messages as messages_repo
from services.campaigns.schema import export_chunks, messages
from services.campaigns.schema import exports as exports_table
from services.campaigns.servicer import CampaignServicer
from shared import auth
from tests.integration.campaigns_harness import Harness, sms

S = c.MessageStatus
WS = (("x-herald-workspace", "wx"),)
VIEWER = auth.Principal("viewer", "wx", frozenset({"viewer"}), pii=False)
N = 23


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exports, "BATCH", 5)  # 23 rows -> a header chunk and 5 row chunks


async def seed(h: Harness, cid: str, n: int = N) -> None:
    """n rows, several sharing a created_at (ties broken by id), custom fields that appear
    only in late rows (the header must still name them), cells needing CSV quoting and
    numbers in free text (masked for a viewer)."""
    now = h.clock.now()
    async with h.engine.begin() as conn:
        for i in range(n):
            fields: dict[str, Any] = {"plan": "gold" if i % 2 else 'silver, "plus"'}
            if i == n - 1:
                fields["zz_late"] = "line\nbreak"
            await conn.execute(insert(messages).values(
                id=f"{cid[:8]}-{(n - i):03d}", campaign_id=cid, workspace_id="wx",
                address=f"+4477009{i:05d}", contact_name=f"Ann +4477009{i:05d}", channel=c.CHANNEL_SMS,
                status=S.MESSAGE_STATUS_FAILED if i % 3 else S.MESSAGE_STATUS_DELIVERED, status_rank=5,
                fields=fields, created_at=now + timedelta(seconds=i // 4),
                error_description=f"no route to +4477009{i:05d}" if i % 3 else "",
                carrier_result="UNDELIV" if i % 3 else "DELIVRD"))


async def single_pass(h: Harness, cid: str, flt: str = "", fmt: int = pb.EXPORT_FORMAT_CSV) -> bytes:
    async with h.engine.connect() as conn:
        rows = await messages_repo.matching(conn, cid, message_filter(flt), in_order=True)
    return exports.render(rows, fmt)


async def download(h: Harness, export_id: str) -> bytes:
    return b"".join([ch.data async for ch in h.stub.DownloadExport(pb.GetExportRequest(id=export_id),
                                                                   metadata=WS)])


async def chunk_count(h: Harness, export_id: str) -> int:
    async with h.engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(export_chunks).where(
            export_chunks.c.export_id == export_id))).scalar_one()


async def build(h: Harness, cid: str, **kw: Any) -> pb.Export:
    ex = await h.stub.CreateExport(pb.CreateExportRequest(campaign_id=cid, **kw), metadata=WS)
    await h.ticks(0.2)
    return await h.stub.GetExport(pb.GetExportRequest(id=ex.id), metadata=WS)


async def test_chunked_export_is_byte_identical_to_single_pass(h: Harness, small_batches: None) -> None:
    cp = await h.stub.CreateCampaign(sms(1), metadata=WS)
    await seed(h, cp.id)
    done = await build(h, cp.id)
    expected = await single_pass(h, cp.id)
    assert done.status == pb.EXPORT_STATUS_DONE and done.rows == N
    assert await chunk_count(h, done.id) == 1 + 5
    assert done.size_bytes == len(expected)
    assert await download(h, done.id) == expected
    assert b"field:zz_late" in expected.split(b"\n", 1)[0]
    txt = await build(h, cp.id, filter="result=failed", format=pb.EXPORT_FORMAT_TXT)
    assert txt.status == pb.EXPORT_STATUS_DONE and 0 < txt.rows < N
    assert await download(h, txt.id) == await single_pass(h, cp.id, "result=failed", pb.EXPORT_FORMAT_TXT)
    empty = await build(h, cp.id, filter="result=unknown")
    assert empty.rows == 0 and await download(h, empty.id) == await single_pass(h, cp.id, "result=unknown")


async def servicer_download(h: Harness, export_id: str, who: auth.Principal) -> bytes:
    """DownloadExport as a principal without pii (the harness's callers all have it)."""
    servicer = CampaignServicer(h.store, clock=h.clock)

    async def run() -> bytes:  # its own task, so the binding stays in that task's context
        auth.bind(who)
        return b"".join([ch.data async for ch in servicer.DownloadExport(pb.GetExportRequest(id=export_id),
                                                                          None)])

    return await asyncio.create_task(run())


async def test_masking_of_chunks_matches_the_whole_file(h: Harness, small_batches: None) -> None:
    cp = await h.stub.CreateCampaign(sms(1), metadata=WS)
    await seed(h, cp.id)
    done = await build(h, cp.id)
    masked = await servicer_download(h, done.id, VIEWER)
    assert masked == exports.mask_export(await single_pass(h, cp.id), pb.EXPORT_FORMAT_CSV, VIEWER)
    assert b"+447700900007" not in masked and masked != await download(h, done.id)


async def test_blob_export_built_before_still_downloads(h: Harness) -> None:
    cp = await h.stub.CreateCampaign(sms(1), metadata=WS)
    await seed(h, cp.id)
    content = await single_pass(h, cp.id)
    now = h.clock.now()
    async with h.engine.begin() as conn:
        await conn.execute(insert(exports_table).values(
            id="old-blob-export", campaign_id=cp.id, workspace_id="wx", format=pb.EXPORT_FORMAT_CSV,
            status=pb.EXPORT_STATUS_DONE, rows=N, content=content, created_at=now, finished_at=now,
            expires_at=now + timedelta(hours=1)))
    got = await h.stub.GetExport(pb.GetExportRequest(id="old-blob-export"), metadata=WS)
    assert got.size_bytes == len(content)
    assert await download(h, "old-blob-export") == content
    assert await servicer_download(h, "old-blob-export", VIEWER) == exports.mask_export(
        content, pb.EXPORT_FORMAT_CSV, VIEWER)


async def test_failed_build_leaves_no_chunks(h: Harness, small_batches: None,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    cp = await h.stub.CreateCampaign(sms(1), metadata=WS)
    await seed(h, cp.id)
    real, calls = exports.render_rows, []

    def failing(rows: list[Any], fmt: int, names: list[str]) -> bytes:
        calls.append(len(rows))
        if len(calls) == 3:  # two row chunks (and the header) already written
            raise RuntimeError("disk on fire")
        return real(rows, fmt, names)

    monkeypatch.setattr(exports, "render_rows", failing)
    failed = await build(h, cp.id)
    assert failed.status == pb.EXPORT_STATUS_FAILED and "disk on fire" in failed.error
    assert len(calls) == 3 and await chunk_count(h, failed.id) == 0
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await download(h, failed.id)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_expiry_drops_chunks(h: Harness, small_batches: None) -> None:
    cp = await h.stub.CreateCampaign(sms(1), metadata=WS)
    await seed(h, cp.id)
    done = await build(h, cp.id)
    assert await chunk_count(h, done.id) == 6
    h.clock.advance(3601)
    await h.ticks(1.2)
    got = await h.stub.GetExport(pb.GetExportRequest(id=done.id), metadata=WS)
    assert got.status == pb.EXPORT_STATUS_EXPIRED and await chunk_count(h, done.id) == 0
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await download(h, done.id)
    assert "expired" in err.value.details()
