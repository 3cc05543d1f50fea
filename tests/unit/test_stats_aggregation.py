"""The stats Lua aggregation against the real Redis: monotonic states, counted-once totals,
de-duplicated opens/clicks/replies. Each test writes under its own key prefix."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from services.stats.aggregator import Aggregator
from shared import states
from shared.timeutil import to_ts

K = e.MessageEventKind
S = c.MessageStatus
NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)


@pytest.fixture
async def agg(redis_client) -> Aggregator:  # type: ignore[no-untyped-def]
    a = Aggregator(redis_client, f"t{uuid.uuid4().hex[:8]}:", message_ttl=3600,
                   event_ttl=3600, daily_ttl=3600)
    await a.load()
    return a


def ev(kind: int, mid: str = "m1", *, cid: str = "c1", ws: str = "ws1",
       event_id: str | None = None, machine: bool = False, variant: str = "",
       at: datetime | None = None, attempt: int = 0) -> e.MessageEvent:
    return e.MessageEvent(
        event_id=event_id or uuid.uuid4().hex, kind=kind, message_id=mid, campaign_id=cid,
        workspace_id=ws, channel=c.CHANNEL_EMAIL, status=states.KIND_STATUS.get(kind, 0),
        occurred_at=to_ts(at or NOW), machine_open=machine, variant=variant, attempt=attempt)


async def apply(agg: Aggregator, *events: e.MessageEvent) -> list[str]:
    return await agg.apply_batch(list(events), NOW)


def nonzero(counters: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counters.items() if v}


async def test_happy_path_queued_to_delivered(agg: Aggregator) -> None:
    res = await apply(agg, ev(K.MESSAGE_EVENT_KIND_QUEUED), ev(K.MESSAGE_EVENT_KIND_SENDING),
                      ev(K.MESSAGE_EVENT_KIND_SUBMITTED), ev(K.MESSAGE_EVENT_KIND_DELIVERED))
    assert res == ["applied"] * 4
    counters, owner = await agg.campaign("c1")
    assert owner == "ws1"
    assert nonzero(counters) == {"total": 1, "sent": 1, "processed": 1, "delivered": 1}
    ws = await agg.workspace("ws1")
    assert (ws["total"], ws["sent"], ws["delivered"]) == (1, 1, 1)
    [st] = await agg.message_states(["m1", "unknown"])
    assert (st.status, st.workspace) == (S.MESSAGE_STATUS_DELIVERED, "ws1")


async def test_submitted_then_delivered_counts_now_states(agg: Aggregator) -> None:
    await apply(agg, ev(K.MESSAGE_EVENT_KIND_SUBMITTED, "a"), ev(K.MESSAGE_EVENT_KIND_SUBMITTED, "b"))
    counters, _ = await agg.campaign("c1")
    assert nonzero(counters) == {"total": 2, "sent": 2, "processed": 2, "submitted": 2}
    await apply(agg, ev(K.MESSAGE_EVENT_KIND_DELIVERED, "a"))
    counters, _ = await agg.campaign("c1")
    assert nonzero(counters) == {"total": 2, "sent": 2, "processed": 2, "submitted": 1,
                                 "delivered": 1}


async def test_late_submitted_after_delivered_changes_nothing(agg: Aggregator) -> None:
    await apply(agg, ev(K.MESSAGE_EVENT_KIND_SUBMITTED), ev(K.MESSAGE_EVENT_KIND_DELIVERED))
    before = await agg.campaign("c1")
    assert await apply(agg, ev(K.MESSAGE_EVENT_KIND_SUBMITTED)) == ["stale"]
    assert await apply(agg, ev(K.MESSAGE_EVENT_KIND_QUEUED)) == ["stale"]
    assert await agg.campaign("c1") == before
    [st] = await agg.message_states(["m1"])
    assert st.status == S.MESSAGE_STATUS_DELIVERED


async def test_delivered_before_submitted_in_one_batch(agg: Aggregator) -> None:
    # Receipts can overtake the submit event on the bus: the order inside a batch is kept.
    res = await apply(agg, ev(K.MESSAGE_EVENT_KIND_DELIVERED), ev(K.MESSAGE_EVENT_KIND_SUBMITTED))
    assert res == ["applied", "stale"]
    counters, _ = await agg.campaign("c1")
    assert nonzero(counters) == {"total": 1, "sent": 1, "processed": 1, "delivered": 1}


async def test_redelivered_events_count_once(agg: Aggregator) -> None:
    delivered = ev(K.MESSAGE_EVENT_KIND_DELIVERED)
    opened = ev(K.MESSAGE_EVENT_KIND_OPENED)
    clicked = ev(K.MESSAGE_EVENT_KIND_CLICKED)
    replied = ev(K.MESSAGE_EVENT_KIND_REPLIED)
    first = await apply(agg, delivered, opened, clicked, replied)
    assert first == ["applied"] * 4
    snapshot = await agg.campaign("c1")
    again = await apply(agg, delivered, opened, clicked, replied, delivered, opened)
    assert again == ["duplicate"] * 6
    assert await agg.campaign("c1") == snapshot
    counters, _ = snapshot
    assert nonzero(counters) == {"total": 1, "sent": 1, "processed": 1, "delivered": 1,
                                 "views": 1, "viewed": 1, "clicks": 1, "clicked": 1, "replies": 1}
    [st] = await agg.message_states(["m1"])
    assert (st.views, st.clicks, st.replies) == (1, 1, 1)


async def test_five_opens_one_viewer(agg: Aggregator) -> None:
    await apply(agg, ev(K.MESSAGE_EVENT_KIND_SUBMITTED))
    res = await apply(agg, *(ev(K.MESSAGE_EVENT_KIND_OPENED) for _ in range(5)))
    assert res == ["applied"] * 5
    counters, _ = await agg.campaign("c1")
    assert (counters["views"], counters["viewed"], counters["machine_opens"]) == (5, 1, 0)
    assert counters["total"] == 1  # opens never add messages
    [st] = await agg.message_states(["m1"])
    assert (st.status, st.views) == (S.MESSAGE_STATUS_SUBMITTED, 5)


async def test_machine_open_counted_separately(agg: Aggregator) -> None:
    await apply(agg, ev(K.MESSAGE_EVENT_KIND_SUBMITTED, "a"), ev(K.MESSAGE_EVENT_KIND_SUBMITTED, "b"))
    await apply(agg, ev(K.MESSAGE_EVENT_KIND_OPENED, "a", machine=True))
    counters, _ = await agg.campaign("c1")
    # A privacy-proxy prefetch is an open hit, but nobody read the message.
    assert (counters["views"], counters["machine_opens"], counters["viewed"]) == (1, 1, 0)
    await apply(agg, ev(K.MESSAGE_EVENT_KIND_OPENED, "a"), ev(K.MESSAGE_EVENT_KIND_OPENED, "b"))
    counters, _ = await agg.campaign("c1")
    assert (counters["views"], counters["machine_opens"], counters["viewed"]) == (3, 1, 2)


async def test_clicks_and_unique_clickers(agg: Aggregator) -> None:
    await apply(agg, *(ev(K.MESSAGE_EVENT_KIND_CLICKED, m) for m in ("a", "a", "a", "b")))
    counters, _ = await agg.campaign("c1")
    assert (counters["clicks"], counters["clicked"]) == (4, 2)


async def test_assumed_delivered_then_failed(agg: Aggregator) -> None:
    await apply(agg, ev(K.MESSAGE_EVENT_KIND_SUBMITTED), ev(K.MESSAGE_EVENT_KIND_ASSUMED_DELIVERED))
    counters, _ = await agg.campaign("c1")
    assert nonzero(counters) == {"total": 1, "sent": 1, "processed": 1, "assumed_delivered": 1}
    assert await apply(agg, ev(K.MESSAGE_EVENT_KIND_FAILED)) == ["applied"]
    counters, _ = await agg.campaign("c1")
    assert nonzero(counters) == {"total": 1, "sent": 1, "processed": 1, "failed": 1}
    assert await apply(agg, ev(K.MESSAGE_EVENT_KIND_ASSUMED_DELIVERED)) == ["stale"]


async def test_failed_before_submit_is_processed_not_sent(agg: Aggregator) -> None:
    await apply(agg, ev(K.MESSAGE_EVENT_KIND_QUEUED), ev(K.MESSAGE_EVENT_KIND_SENDING))
    counters, _ = await agg.campaign("c1")
    assert nonzero(counters) == {"total": 1, "sending": 1}
    await apply(agg, ev(K.MESSAGE_EVENT_KIND_DEFERRED), ev(K.MESSAGE_EVENT_KIND_BOUNCED))
    counters, _ = await agg.campaign("c1")
    assert nonzero(counters) == {"total": 1, "processed": 1, "failed": 1}


async def test_unknown_kind_and_missing_ids_are_ignored(agg: Aggregator) -> None:
    # An open without event_id could never be de-duplicated, so it is not counted.
    no_event_id = e.MessageEvent(kind=K.MESSAGE_EVENT_KIND_OPENED, message_id="m1", campaign_id="c1")
    res = await apply(agg, ev(K.MESSAGE_EVENT_KIND_UNSPECIFIED), ev(99),
                      ev(K.MESSAGE_EVENT_KIND_DELIVERED, ""), no_event_id,
                      ev(K.MESSAGE_EVENT_KIND_OPENED))
    assert res == ["ignored", "ignored", "ignored", "ignored", "applied"]
    counters, _ = await agg.campaign("c1")
    assert nonzero(counters) == {"total": 1, "views": 1, "viewed": 1}


async def test_owner_is_kept_from_the_first_event(agg: Aggregator) -> None:
    await apply(agg, ev(K.MESSAGE_EVENT_KIND_SUBMITTED, cid="c9", ws="ws-a"))
    # A later event without ids still lands on the message's campaign and workspace.
    bare = e.MessageEvent(event_id="x1", kind=K.MESSAGE_EVENT_KIND_DELIVERED, message_id="m1")
    assert await apply(agg, bare) == ["applied"]
    counters, owner = await agg.campaign("c9")
    assert owner == "ws-a" and counters["delivered"] == 1 and counters["submitted"] == 0
    assert (await agg.workspace("ws-a"))["delivered"] == 1


async def test_daily_and_variant_counters(agg: Aggregator) -> None:
    day1 = datetime(2025, 3, 1, 23, 59, tzinfo=UTC)
    day2 = datetime(2025, 3, 2, 0, 1, tzinfo=UTC)
    await apply(agg, ev(K.MESSAGE_EVENT_KIND_SUBMITTED, "a", variant="A", at=day1),
                ev(K.MESSAGE_EVENT_KIND_SUBMITTED, "b", variant="B", at=day1),
                ev(K.MESSAGE_EVENT_KIND_DELIVERED, "a", at=day2),
                ev(K.MESSAGE_EVENT_KIND_OPENED, "a", at=day2))
    daily = await agg.daily("c1")
    assert list(daily) == ["20250301", "20250302"]
    assert nonzero(daily["20250301"]) == {"total": 2, "sent": 2, "processed": 2, "submitted": 2}
    assert nonzero(daily["20250302"]) == {"delivered": 1, "views": 1, "viewed": 1}
    va = await agg.variant("c1", "A")
    assert nonzero(va) == {"total": 1, "sent": 1, "processed": 1, "delivered": 1,
                           "views": 1, "viewed": 1}
    assert nonzero(await agg.variant("c1", "B")) == {"total": 1, "sent": 1, "processed": 1,
                                                     "submitted": 1}


async def test_message_ttl_and_script_reload(agg: Aggregator, redis_client) -> None:  # type: ignore[no-untyped-def]
    await apply(agg, ev(K.MESSAGE_EVENT_KIND_SUBMITTED))
    ttl = await redis_client.ttl(agg.message_key("m1"))
    assert 0 < ttl <= 3600
    agg.sha = "0" * 40  # as after a Redis restart: NOSCRIPT, reload, retry
    assert await apply(agg, ev(K.MESSAGE_EVENT_KIND_DELIVERED)) == ["applied"]
    counters, _ = await agg.campaign("c1")
    assert counters["delivered"] == 1


# --- attempts: RetryMessages republishes QUEUED with attempt+1 ----------------------------

async def test_retry_after_build_failure_starts_the_message_afresh(agg: Aggregator) -> None:
    # As campaigns publishes them: the build's events say no attempt, the retry says 2.
    await apply(agg, ev(K.MESSAGE_EVENT_KIND_QUEUED, event_id="m1:queued"),
                ev(K.MESSAGE_EVENT_KIND_FAILED, event_id="m1:failed"))
    counters, _ = await agg.campaign("c1")
    assert nonzero(counters) == {"total": 1, "processed": 1, "failed": 1}
    res = await apply(agg, ev(K.MESSAGE_EVENT_KIND_QUEUED, event_id="m1:queued:2", attempt=2))
    assert res == ["applied"]
    counters, _ = await agg.campaign("c1")
    # The ledger now says QUEUED, attempt 2: so do the counters.
    assert nonzero(counters) == {"total": 1, "queued": 1}
    assert nonzero(await agg.workspace("ws1")) == {"total": 1, "queued": 1}
    # A late event of the first attempt is stale; the second attempt moves on.
    assert await apply(agg, ev(K.MESSAGE_EVENT_KIND_SUBMITTED, attempt=1)) == ["stale"]
    assert await apply(agg, ev(K.MESSAGE_EVENT_KIND_SENDING, event_id="m1:sending:2", attempt=2),
                       ev(K.MESSAGE_EVENT_KIND_SUBMITTED, attempt=2)) == ["applied", "applied"]
    counters, _ = await agg.campaign("c1")
    assert nonzero(counters) == {"total": 1, "sent": 1, "processed": 1, "submitted": 1}
    [st] = await agg.message_states(["m1"])
    assert st.status == S.MESSAGE_STATUS_SUBMITTED


async def test_sent_describes_the_current_attempt(agg: Aggregator) -> None:
    # Handed over, then failed by the carrier: sent (and processed).
    await apply(agg, ev(K.MESSAGE_EVENT_KIND_QUEUED), ev(K.MESSAGE_EVENT_KIND_SUBMITTED, attempt=1),
                ev(K.MESSAGE_EVENT_KIND_FAILED, attempt=1))
    counters, _ = await agg.campaign("c1")
    assert nonzero(counters) == {"total": 1, "sent": 1, "processed": 1, "failed": 1}
    # Retried: the new attempt has not been handed over yet (the ledger resets sent_at).
    await apply(agg, ev(K.MESSAGE_EVENT_KIND_QUEUED, attempt=2))
    counters, _ = await agg.campaign("c1")
    assert nonzero(counters) == {"total": 1, "queued": 1}
    # Failed before submission this time: processed, not sent.
    await apply(agg, ev(K.MESSAGE_EVENT_KIND_FAILED, attempt=2))
    counters, _ = await agg.campaign("c1")
    assert nonzero(counters) == {"total": 1, "processed": 1, "failed": 1}
    # An event that names no attempt belongs to the current one.
    assert await apply(agg, ev(K.MESSAGE_EVENT_KIND_QUEUED)) == ["stale"]
    # Attempt 3 goes through: counted sent once, not once per attempt.
    await apply(agg, ev(K.MESSAGE_EVENT_KIND_QUEUED, attempt=3),
                ev(K.MESSAGE_EVENT_KIND_SUBMITTED, attempt=3), ev(K.MESSAGE_EVENT_KIND_DELIVERED))
    counters, _ = await agg.campaign("c1")
    assert nonzero(counters) == {"total": 1, "sent": 1, "processed": 1, "delivered": 1}
    # The day's flow counters count entries and never go down.
    [day] = (await agg.daily("c1")).values()
    assert (day["total"], day["sent"], day["processed"], day["queued"]) == (1, 2, 3, 3)


async def test_higher_attempt_overtaking_its_queued_event(agg: Aggregator) -> None:
    await apply(agg, ev(K.MESSAGE_EVENT_KIND_QUEUED), ev(K.MESSAGE_EVENT_KIND_FAILED))
    # The new attempt's SUBMITTED arrives before its QUEUED: the QUEUED is then stale.
    res = await apply(agg, ev(K.MESSAGE_EVENT_KIND_SUBMITTED, attempt=2),
                      ev(K.MESSAGE_EVENT_KIND_QUEUED, attempt=2))
    assert res == ["applied", "stale"]
    counters, _ = await agg.campaign("c1")
    assert nonzero(counters) == {"total": 1, "sent": 1, "processed": 1, "submitted": 1}


async def test_sending_is_a_live_state(agg: Aggregator) -> None:
    # The dispatcher's event: kind SENDING, event_id "<message_id>:sending:<attempt>".
    await apply(agg, ev(K.MESSAGE_EVENT_KIND_QUEUED, "a", event_id="a:queued"),
                ev(K.MESSAGE_EVENT_KIND_QUEUED, "b", event_id="b:queued"),
                ev(K.MESSAGE_EVENT_KIND_SENDING, "a", event_id="a:sending:1", attempt=1),
                ev(K.MESSAGE_EVENT_KIND_SENDING, "b", event_id="b:sending:1", attempt=1))
    counters, _ = await agg.campaign("c1")
    assert nonzero(counters) == {"total": 2, "sending": 2}
    # The gateway's outcome can overtake the dispatcher's event: SENDING never goes back.
    res = await apply(agg, ev(K.MESSAGE_EVENT_KIND_SUBMITTED, "a", attempt=1),
                      ev(K.MESSAGE_EVENT_KIND_DELIVERED, "b", attempt=1),
                      ev(K.MESSAGE_EVENT_KIND_SENDING, "a", event_id="a:sending:1", attempt=1),
                      ev(K.MESSAGE_EVENT_KIND_SENDING, "b", event_id="b:sending:1", attempt=1))
    assert res == ["applied", "applied", "stale", "stale"]
    counters, _ = await agg.campaign("c1")
    assert nonzero(counters) == {"total": 2, "sent": 2, "processed": 2, "submitted": 1,
                                 "delivered": 1}


async def test_campaign_owner_record(agg: Aggregator) -> None:
    assert await agg.owner("c7") == ""
    await agg.record_owner("c7", "ws-x")
    await agg.record_owner("c7", "ws-y")  # the first record wins
    assert await agg.owner("c7") == "ws-x"
    counters, owner = await agg.campaign("c7")
    assert owner == "ws-x" and not nonzero(counters)
