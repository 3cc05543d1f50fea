"""The rebuild's Redis steps (begin / merge / finish) against the real Redis, with events
applied by the aggregator in between each step: nothing applied during a rebuild is lost,
the campaign never reads as zero, and the result equals the ledger's rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from services.stats.aggregator import Aggregator
from services.stats.rebuild import LedgerMessage, RebuildStore, Superseded
from shared import states

K = e.MessageEventKind
S = c.MessageStatus
NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)


@pytest.fixture
async def pair(redis_client) -> tuple[Aggregator, RebuildStore]:  # type: ignore[no-untyped-def]
    prefix = f"rb{uuid.uuid4().hex[:8]}:"
    agg = Aggregator(redis_client, prefix, message_ttl=3600, event_ttl=3600, daily_ttl=3600)
    await agg.load()
    return agg, RebuildStore(redis_client, prefix, message_ttl=3600, daily_ttl=3600)


def ev(kind: int, mid: str, *, cid: str = "c1", attempt: int = 0, machine: bool = False,
       variant: str = "A") -> e.MessageEvent:
    return e.MessageEvent(event_id=uuid.uuid4().hex, kind=kind, message_id=mid, campaign_id=cid,
                          workspace_id="ws1", channel=c.CHANNEL_EMAIL, variant=variant,
                          status=states.KIND_STATUS.get(kind, 0), attempt=attempt,
                          machine_open=machine)


def row(mid: str, status: int, *, sent: bool = False, views: int = 0, clicks: int = 0,
        replies: int = 0, attempt: int = 1, variant: str = "A") -> LedgerMessage:
    return LedgerMessage(mid, status, attempt, sent, views, clicks, replies, c.CHANNEL_EMAIL,
                         variant, created_day="20250314", sent_day="20250314" if sent else "",
                         delivered_day="20250315" if status == S.MESSAGE_STATUS_DELIVERED else "")


def nonzero(counters: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counters.items() if v}


def days(rows: list[LedgerMessage]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for r in rows:
        for key in r.days():
            out[key] = out.get(key, 0) + 1
    return out


async def test_rebuild_after_data_loss_equals_the_ledger(pair) -> None:  # type: ignore[no-untyped-def]
    agg, store = pair
    rows = [row("m1", S.MESSAGE_STATUS_DELIVERED, sent=True, views=3, clicks=1),
            row("m2", S.MESSAGE_STATUS_FAILED, sent=True, replies=2, variant="B"),
            row("m3", S.MESSAGE_STATUS_FAILED),  # failed before submission: not sent
            row("m4", S.MESSAGE_STATUS_QUEUED, variant="B")]
    # Another campaign of the workspace keeps its share of the workspace totals.
    await agg.apply_batch([ev(K.MESSAGE_EVENT_KIND_SUBMITTED, "other", cid="c2")], NOW)
    token = await store.begin("c1")
    assert await store.merge("c1", "ws1", token, rows[:3]) == 3
    assert await store.merge("c1", "ws1", token, rows[2:]) == 1  # m3 read twice counts once
    await store.finish("c1", "ws1", token, days(rows))
    counters, owner = await agg.campaign("c1")
    assert owner == "ws1"
    assert nonzero(counters) == {"total": 4, "sent": 2, "processed": 3, "delivered": 1,
                                 "failed": 2, "queued": 1, "views": 3, "viewed": 1,
                                 "clicks": 1, "clicked": 1, "replies": 2}
    arms = await agg.variants("c1")
    assert (arms["A"]["total"], arms["A"]["delivered"], arms["A"]["failed"]) == (2, 1, 1)
    assert (arms["B"]["total"], arms["B"]["failed"], arms["B"]["replies"]) == (2, 1, 2)
    ws = await agg.workspace("ws1")
    assert (ws["total"], ws["sent"], ws["submitted"], ws["delivered"]) == (5, 3, 1, 1)
    got = {s.message_id: (s.status, s.views, s.clicks, s.replies)
           for s in await agg.message_states(["m1", "m2", "m3", "m4"])}
    assert got == {"m1": (S.MESSAGE_STATUS_DELIVERED, 3, 1, 0), "m2": (S.MESSAGE_STATUS_FAILED, 0, 0, 2),
                   "m3": (S.MESSAGE_STATUS_FAILED, 0, 0, 0), "m4": (S.MESSAGE_STATUS_QUEUED, 0, 0, 0)}
    daily = await agg.daily("c1")
    assert (daily["20250314"]["total"], daily["20250314"]["sent"], daily["20250315"]["delivered"]) == \
        (4, 2, 1)
    # Events after the rebuild apply on top, as usual.
    await agg.apply_batch([ev(K.MESSAGE_EVENT_KIND_SENDING, "m4", attempt=1, variant="B"),
                           ev(K.MESSAGE_EVENT_KIND_OPENED, "m1")], NOW)
    counters, _ = await agg.campaign("c1")
    assert (counters["queued"], counters["sending"], counters["views"], counters["viewed"]) == (0, 1, 4, 1)
    assert (await agg.workspace("ws1"))["total"] == 5


async def test_events_applied_during_the_rebuild_are_kept(pair) -> None:  # type: ignore[no-untyped-def]
    agg, store = pair
    # What Redis holds before: drifted counters (m1 stuck SENDING, m9 a stray message).
    await agg.apply_batch([ev(K.MESSAGE_EVENT_KIND_SENDING, "m1", attempt=1),
                           ev(K.MESSAGE_EVENT_KIND_SUBMITTED, "m9"),
                           ev(K.MESSAGE_EVENT_KIND_OPENED, "m2", machine=True)], NOW)
    before, _ = await agg.campaign("c1")
    rows = [row("m1", S.MESSAGE_STATUS_SUBMITTED, sent=True),
            row("m2", S.MESSAGE_STATUS_SUBMITTED, sent=True, views=1),
            row("m3", S.MESSAGE_STATUS_SUBMITTED, sent=True),
            row("m4", S.MESSAGE_STATUS_SENDING)]
    token = await store.begin("c1")
    await store.merge("c1", "ws1", token, rows[:2])
    # Between the chunks: events for merged (m1, m2) and not yet merged (m3, m4) messages.
    await agg.apply_batch([ev(K.MESSAGE_EVENT_KIND_DELIVERED, "m1"),
                           ev(K.MESSAGE_EVENT_KIND_CLICKED, "m2"),
                           ev(K.MESSAGE_EVENT_KIND_DELIVERED, "m3"),
                           ev(K.MESSAGE_EVENT_KIND_OPENED, "m3")], NOW)
    # Until the swap the campaign reads its old figures (plus the new events), never zero.
    during, _ = await agg.campaign("c1")
    assert during["total"] >= before["total"] > 0
    await store.merge("c1", "ws1", token, rows[2:])
    await agg.apply_batch([ev(K.MESSAGE_EVENT_KIND_SUBMITTED, "m4", attempt=1),
                           ev(K.MESSAGE_EVENT_KIND_FAILED, "m2")], NOW)
    await store.finish("c1", "ws1", token, days(rows))
    await agg.apply_batch([ev(K.MESSAGE_EVENT_KIND_DELIVERED, "m4")], NOW)
    counters, _ = await agg.campaign("c1")
    # m1 DELIVERED, m2 FAILED (1 machine open, 1 click), m3 DELIVERED (1 open), m4 DELIVERED;
    # m9 is not in the ledger, so not in the campaign's figures.
    assert nonzero(counters) == {"total": 4, "sent": 4, "processed": 4, "delivered": 3,
                                 "failed": 1, "views": 2, "viewed": 1, "machine_opens": 1,
                                 "clicks": 1, "clicked": 1}
    assert nonzero(await agg.variant("c1", "A")) == nonzero(counters)
    got = {s.message_id: (s.status, s.views, s.clicks)
           for s in await agg.message_states(["m1", "m2", "m3", "m4"])}
    assert got == {"m1": (S.MESSAGE_STATUS_DELIVERED, 0, 0), "m2": (S.MESSAGE_STATUS_FAILED, 1, 1),
                   "m3": (S.MESSAGE_STATUS_DELIVERED, 1, 0), "m4": (S.MESSAGE_STATUS_DELIVERED, 0, 0)}
    ws = await agg.workspace("ws1")
    assert (ws["total"], ws["delivered"], ws["submitted"], ws["sending"]) == (4, 3, 0, 0)


async def test_redis_ahead_of_the_ledger_is_kept(pair) -> None:  # type: ignore[no-untyped-def]
    agg, store = pair
    # Redis already has the receipt and a retry's attempt the ledger has not recorded yet.
    await agg.apply_batch([ev(K.MESSAGE_EVENT_KIND_DELIVERED, "m1"),
                           ev(K.MESSAGE_EVENT_KIND_QUEUED, "m2", attempt=2)], NOW)
    token = await store.begin("c1")
    await store.merge("c1", "ws1", token, [row("m1", S.MESSAGE_STATUS_SUBMITTED, sent=True),
                                           row("m2", S.MESSAGE_STATUS_FAILED, sent=True)])
    await store.finish("c1", "ws1", token, {})
    counters, _ = await agg.campaign("c1")
    assert nonzero(counters) == {"total": 2, "sent": 1, "processed": 1, "delivered": 1, "queued": 1}


async def test_a_newer_rebuild_supersedes_and_an_empty_campaign_reads_zero(pair) -> None:  # type: ignore[no-untyped-def]
    agg, store = pair
    await agg.apply_batch([ev(K.MESSAGE_EVENT_KIND_QUEUED, "m1")], NOW)
    first = await store.begin("c1")
    second = await store.begin("c1")
    with pytest.raises(Superseded):
        await store.merge("c1", "ws1", first, [row("m1", S.MESSAGE_STATUS_QUEUED)])
    with pytest.raises(Superseded):
        await store.finish("c1", "ws1", first, {})
    await store.abandon("c1", first)  # leaves the newer rebuild's marker alone
    await store.finish("c1", "ws1", second, {})  # the ledger has no rows for it
    counters, owner = await agg.campaign("c1")
    assert owner == "ws1" and nonzero(counters) == {}
    assert await agg.variants("c1") == {}
    assert (await agg.workspace("ws1"))["total"] == 0
