"""An A/B campaign's build streams its audience like a plain one: a first read counts the
accepted members, a second assigns and writes chunk by chunk. The assignment is the one of
the build that read the whole audience first (same variant and hold per message id, with
repeated addresses, rejected members and several test_percent values), a crash half way
through the second read is taken up again to the same result, and the members pulled from
the stream are never more than a chunk ahead of the ledger. Real SQL (both backends), a
private NATS, the real recipients service (its stream wrapped to add repeats and
rejections, as an audience source could send them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from herald.v1 import campaigns_pb2 as pb
from herald.v1 import common_pb2 as c
from herald.v1 import recipients_pb2 as rpb
from sqlalchemy import select

from services.campaigns.repo import messages as messages_repo
from services.campaigns.scheduler import Scheduler
from services.campaigns.scheduler import build as build_module
from services.campaigns.scheduler.content import message_id
from services.campaigns.schema import messages
from shared import channels
from tests.integration.campaigns_harness import Harness, sms, tick
from tests.integration.test_campaigns_build_recovery import SlowStream, queued_events

WS = "wabb"
VARIANTS = [pb.Variant(name="A", split_percent=20, content=pb.Content(text="Offer A")),
            pb.Variant(name="B", split_percent=30, content=pb.Content(text="Offer B")),
            pb.Variant(name="C", split_percent=50, content=pb.Content(text="Offer C"))]


def md() -> tuple:
    return (("x-herald-workspace", WS),)


class MixedStream:
    """The real recipients stub, its audience re-sent in pieces of `piece` members with
    repeats and rejections mixed in: every `repeat_every`-th member is followed, `lag`
    members later, by a copy of itself (another name, so the first one's row is
    recognisable), and every `reject_every`-th member is refused as opted out. The same
    request gives the same stream every time. `pulled` counts the members handed out by
    the stream being read; `streams` how many were opened; `first` is the first read's."""

    def __init__(self, real: Any, piece: int = 5, repeat_every: int = 4, lag: int = 9,
                 reject_every: int = 7) -> None:
        self.real, self.piece, self.repeat_every, self.lag = real, piece, repeat_every, lag
        self.reject_every = reject_every
        self.pulled = self.streams = 0
        self.first: list[rpb.AudienceMember] = []
        self.break_after: tuple[int, int] | None = None  # (stream number, members): UNAVAILABLE

    def mixed(self, members: list[rpb.AudienceMember]) -> list[rpb.AudienceMember]:
        out: list[rpb.AudienceMember] = []
        later: dict[int, list[rpb.AudienceMember]] = {}
        for i, m in enumerate(members):
            if i % self.reject_every == self.reject_every - 1:
                m = rpb.AudienceMember(recipient=m.recipient, accepted=False,
                                       rejection=c.FAILURE_CATEGORY_UNSUBSCRIBED, rejection_reason="opted out")
            out.append(m)
            if i % self.repeat_every == 1:
                again = rpb.AudienceMember()
                again.CopyFrom(m)
                again.accepted = not m.accepted if i % 3 == 0 else m.accepted
                again.recipient.first_name = "Repeat"
                later.setdefault(i + self.lag, []).append(again)
            out += later.pop(i, [])
        return out + [m for k in sorted(later) for m in later[k]]

    def ResolveAudienceChunks(self, req: rpb.ResolveAudienceRequest, **kw: Any) -> AsyncIterator[Any]:  # noqa: N802
        async def gen() -> AsyncIterator[Any]:
            self.streams += 1
            self.pulled = 0
            number = self.streams
            members = [m async for chunk in self.real.ResolveAudienceChunks(req, **kw) for m in chunk.members]
            members = self.mixed(members)
            if number == 1:
                self.first = members
            for i in range(0, len(members), self.piece):
                if self.break_after and self.break_after[0] == number and i >= self.break_after[1]:
                    self.break_after = None
                    raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(),
                                               grpc.aio.Metadata(), details="recipients went away")
                part = members[i:i + self.piece]
                self.pulled += len(part)
                yield rpb.AudienceChunk(members=part)
        return gen()


def expected(cid: str, variants: list[dict], test_percent: int,
             audience: list[rpb.AudienceMember]) -> dict[str, tuple[str, bool]]:
    """The assignment of the build that read the whole audience first: in audience order,
    the first member of each address (a set of those seen), the accepted count up front."""
    assign = build_module.variant_assigner(variants, test_percent, sum(1 for m in audience if m.accepted))
    seen: set[str] = set()
    out = {}
    for m in audience:
        address = channels.spec(c.CHANNEL_SMS).address_of(m.recipient)
        key = address or f"contact:{m.recipient.contact_id}"
        if key in seen:
            continue
        seen.add(key)
        out[message_id(cid, c.CHANNEL_SMS, key)] = assign() if m.accepted else ("", False)
    return out


async def create(h: Harness, n: int, test_percent: int) -> str:
    req = sms(n, auto_start=True, test_percent=test_percent, variants=VARIANTS)
    cp = await h.stub.CreateCampaign(req, metadata=md())
    await h.stub.ApproveCampaign(pb.CampaignActionRequest(id=cp.id), metadata=md())
    return cp.id


async def ledger(h: Harness, cid: str) -> dict[str, tuple[str, bool]]:
    async with h.engine.connect() as conn:
        rows = (await conn.execute(select(messages.c.id, messages.c.variant, messages.c.held, messages.c.status,
                                          messages.c.contact_name).where(messages.c.campaign_id == cid))).all()
    assert all(r.contact_name != "Repeat" for r in rows)  # the first of a repeated address
    return {r.id: (r.variant, r.held) for r in rows}


VARIANT_DICTS = [{"name": v.name, "split_percent": v.split_percent} for v in VARIANTS]


@pytest.mark.parametrize(("n", "test_percent", "mix"), [
    (40, 0, dict()),
    (60, 30, dict(repeat_every=3, lag=2, reject_every=5)),
    (97, 55, dict(repeat_every=5, lag=23, reject_every=4)),
    (33, 100, dict(repeat_every=2, lag=1, reject_every=9)),
])
async def test_the_streamed_ab_build_assigns_as_the_whole_audience_build(
        h: Harness, monkeypatch: pytest.MonkeyPatch, n: int, test_percent: int, mix: dict) -> None:
    monkeypatch.setattr(build_module, "BUILD_CHUNK", 7)
    stream = MixedStream(h.scheduler.recipients, **mix)
    h.scheduler.recipients = stream
    cid = await create(h, n, test_percent)
    await h.ticks(0.2)
    cp = await h.status(cid, md())
    assert cp.status == pb.CAMPAIGN_STATUS_SENDING, cp.status_reason
    want = expected(cid, VARIANT_DICTS, test_percent, stream.first)
    assert len(stream.first) > len(want) > n - n // 3  # repeats and rejections were there
    assert await ledger(h, cid) == want
    assert cp.recipients_count == len(want)


async def test_an_ab_build_broken_in_its_second_read_resumes_to_the_same_assignment(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The recipients service goes away half way through the writing read (repeats of
    addresses written before the break come after it); a restarted scheduler builds the
    rest: the same variants as an unbroken build, every sent message announced once."""
    monkeypatch.setattr(build_module, "BUILD_CHUNK", 7)
    stream = MixedStream(h.scheduler.recipients, repeat_every=3, lag=20, reject_every=6)
    stream.break_after = (2, 30)
    h.scheduler.recipients = stream
    cid = await create(h, 70, 40)
    await h.ticks(0.2)
    assert (await h.status(cid, md())).status == pb.CAMPAIGN_STATUS_BUILDING
    async with h.engine.connect() as conn:
        written = await messages_repo.count(conn, cid)
    assert 0 < written < 70
    want = expected(cid, VARIANT_DICTS, 40, stream.first)

    fresh = Scheduler(h.store, h.scheduler.js, stream, clock=h.clock, lease=10,
                      max_payload=h.nc.max_payload)
    h.clock.advance(11)
    for _ in range(3):
        h.clock.advance(0.2)
        await tick(fresh)
    cp = await h.status(cid, md())
    assert cp.status == pb.CAMPAIGN_STATUS_SENDING, cp.status_reason
    assert await ledger(h, cid) == want
    sent = {mid for mid, (_v, held) in want.items() if not held}
    assert await queued_events(h, cid) == {mid: 1 for mid in sent}


async def test_an_ab_build_writes_its_first_chunk_before_reading_the_whole_audience(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audience is not held: when the first ledger chunk is written, the stream being
    read has handed out at most a chunk (and one piece of the stream) of members."""
    monkeypatch.setattr(build_module, "BUILD_CHUNK", 10)
    stream = MixedStream(h.scheduler.recipients, piece=5)
    h.scheduler.recipients = stream
    pulled_at_first_write: list[int] = []
    real_add = messages_repo.add_missing

    async def add_missing(conn: Any, rows: list[dict[str, Any]]) -> Any:
        if not pulled_at_first_write:
            pulled_at_first_write.append(stream.pulled)
        return await real_add(conn, rows)
    monkeypatch.setattr(messages_repo, "add_missing", add_missing)
    cid = await create(h, 80, 50)
    await h.ticks(0.2)
    assert (await h.status(cid, md())).status == pb.CAMPAIGN_STATUS_SENDING
    assert len(stream.first) > 80
    assert pulled_at_first_write and pulled_at_first_write[0] <= 10 + 5


async def test_an_ab_build_longer_than_its_lease_keeps_it(h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The counting read writes nothing but renews the lease: another replica ticking while
    the build takes longer than the lease does not take the campaign."""
    monkeypatch.setattr(build_module, "BUILD_CHUNK", 10)
    other = Scheduler(h.store, h.scheduler.js, h.scheduler.recipients, clock=h.clock, lease=10,
                      max_payload=h.nc.max_payload, owner="other-replica")
    taken: list[str] = []

    async def between() -> None:
        h.clock.advance(6)  # 3 pieces a read: 18 s, past the 10 s lease the build's tick took
        taken.extend(r["id"] for r in await other.claim(h.clock.now()))

    h.scheduler.recipients = SlowStream(h.scheduler.recipients, between)
    cid = await create(h, 30, 50)
    h.clock.advance(0.2)
    await tick(h.scheduler)
    assert cid not in taken
    cp = await h.status(cid, md())
    assert cp.status == pb.CAMPAIGN_STATUS_SENDING and cp.recipients_count == 30
