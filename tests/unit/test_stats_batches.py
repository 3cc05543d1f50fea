"""The event script applies a whole batch in one call: the keys end exactly as when each event
is applied by a call of its own (counters summed per batch, owner, sets and TTLs written once),
an event that fails leaves the others applied and the batch raises, and a batch is one
EVALSHA. Against the real Redis; each test writes under its own key prefix."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e
from redis.exceptions import ResponseError

from services.stats import aggregator as aggregator_module
from services.stats.aggregator import Aggregator
from shared import states

K = e.MessageEventKind
NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
DAY0 = 1741910400  # 2025-03-14 00:00 UTC


def aggregator(redis_client: Any) -> Aggregator:
    return Aggregator(
        redis_client, f"tb{uuid.uuid4().hex[:8]}:", message_ttl=3600, event_ttl=3600, daily_ttl=7200
    )


def random_events(rng: random.Random, n: int) -> list[e.MessageEvent]:
    """Every kind (and an unknown one), repeated event ids, attempts said and not, a few
    messages many times, events without campaign, workspace, variant, time or ids."""
    kinds = [*K.values(), 99]
    ids: list[str] = []
    out = []
    for _ in range(n):
        kind = rng.choice(kinds)
        event_id = rng.choice(ids) if ids and rng.random() < 0.15 else uuid.uuid4().hex
        ids.append(event_id)
        ev = e.MessageEvent(
            event_id=event_id if rng.random() < 0.95 else "",
            kind=kind,
            message_id=f"m{rng.randrange(30)}" if rng.random() < 0.97 else "",
            campaign_id=rng.choice(["c1", "c2", ""]),
            workspace_id=rng.choice(["w1", "w2", ""]),
            channel=rng.choice([0, c.CHANNEL_SMS, c.CHANNEL_EMAIL]),
            variant=rng.choice(["", "A", "B"]),
            machine_open=rng.random() < 0.3,
            attempt=rng.choice([0, 0, 1, 1, 2, 3]),
            status=states.KIND_STATUS.get(kind, 0),
        )
        if rng.random() < 0.9:
            ev.occurred_at.seconds = DAY0 + rng.randrange(3) * 86400 + rng.randrange(3600)
        out.append(ev)
    return out


async def seed_rebuild(agg: Aggregator) -> None:
    """A rebuild of c1 running, which has merged m1..m3: their events count there too."""
    await agg.redis.set(f"{agg.prefix}rb:c1", "tok")
    for mid in ("m1", "m2", "m3"):
        await agg.redis.hset(
            agg.message_key(mid),
            mapping={
                "rb": "tok",
                "st": str(c.MESSAGE_STATUS_SUBMITTED),
                "c": "c1",
                "w": "w1",
                "va": "A",
                "at": "1",
                "snt": "1",
                "prc": "1",
            },
        )


async def dump(agg: Aggregator) -> dict[str, tuple[str, Any, bool]]:
    """Every key of the prefix: type, content, whether it has a TTL."""
    r, out = agg.redis, {}
    async for key in r.scan_iter(match=f"{agg.prefix}*", count=1000):
        kind = (await r.type(key)).decode()
        if kind == "hash":
            value: Any = {f.decode(): v.decode() for f, v in (await r.hgetall(key)).items()}
        elif kind == "set":
            value = sorted(m.decode() for m in await r.smembers(key))
        else:
            value = (await r.get(key)).decode()
        out[key.decode().removeprefix(agg.prefix)] = (kind, value, await r.ttl(key) > 0)
    return out


@pytest.mark.parametrize("seed", range(12))
async def test_a_batch_ends_as_one_call_per_event(redis_client, seed: int) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(seed)
    events = random_events(rng, 300)
    single, batched = aggregator(redis_client), aggregator(redis_client)
    for agg in (single, batched):
        await seed_rebuild(agg)
    one_by_one = [r for ev in events for r in await single.apply_batch([ev], NOW)]
    in_batches: list[str] = []
    k = 0
    while k < len(events):
        size = rng.randint(1, 150)
        in_batches += await batched.apply_batch(events[k : k + size], NOW)
        k += size
    assert in_batches == one_by_one
    assert {"applied", "duplicate", "stale", "ignored"} <= set(one_by_one)
    assert await dump(batched) == await dump(single)


async def test_replaying_a_batch_changes_nothing(redis_client) -> None:  # type: ignore[no-untyped-def]
    agg = aggregator(redis_client)
    # Opens, clicks and replies only: the event ids make every replay a duplicate.
    events = [
        ev
        for ev in random_events(random.Random(7), 200)
        if ev.kind
        in (K.MESSAGE_EVENT_KIND_OPENED, K.MESSAGE_EVENT_KIND_CLICKED, K.MESSAGE_EVENT_KIND_REPLIED)
    ]
    await agg.apply_batch(events, NOW)
    before = await dump(agg)
    again = await agg.apply_batch(events, NOW)
    assert set(again) <= {"duplicate", "ignored"}
    assert await dump(agg) == before


async def test_a_failing_event_leaves_the_others_applied(redis_client) -> None:  # type: ignore[no-untyped-def]
    agg = aggregator(redis_client)
    await redis_client.set(agg.message_key("broken"), "not a hash")
    events = [
        e.MessageEvent(
            event_id=f"x{i}",
            kind=K.MESSAGE_EVENT_KIND_SUBMITTED,
            message_id=mid,
            campaign_id="c1",
            workspace_id="w1",
            status=c.MESSAGE_STATUS_SUBMITTED,
        )
        for i, mid in enumerate(("a", "broken", "b"))
    ]
    with pytest.raises(ResponseError, match="1 of 3 events failed"):
        await agg.apply_batch(events, NOW)
    counters, owner = await agg.campaign("c1")
    assert (counters["total"], counters["submitted"], owner) == (2, 2, "w1")
    # Redelivered once the key is repaired: the others are duplicates, the third is applied.
    await redis_client.delete(agg.message_key("broken"))
    assert await agg.apply_batch(events, NOW) == ["duplicate", "applied", "duplicate"]
    counters, _ = await agg.campaign("c1")
    assert (counters["total"], counters["submitted"]) == (3, 3)


async def test_a_batch_is_one_script_call(redis_client) -> None:  # type: ignore[no-untyped-def]
    agg = aggregator(redis_client)
    await agg.load()
    events = [ev for ev in random_events(random.Random(3), 200) if ev.message_id]

    async def calls() -> int:
        stats = await redis_client.info("commandstats")
        return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))

    before = await calls()
    await agg.apply_batch(events, NOW)
    assert await calls() - before == 1


async def test_a_large_batch_is_split_into_calls_in_order(redis_client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(aggregator_module, "CALL_EVENTS", 7)
    rng = random.Random(99)
    events = random_events(rng, 100)
    single, split = aggregator(redis_client), aggregator(redis_client)
    one_by_one = [r for ev in events for r in await single.apply_batch([ev], NOW)]
    assert await split.apply_batch(events, NOW) == one_by_one
    assert await dump(split) == await dump(single)
