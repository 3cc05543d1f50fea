"""The send markers' Redis work per job (gateways.core.markers), against a real redis-server:
a fresh claim is one command per job, the write gate sends each claim's values once per call,
and the answers stay those of the compare-and-set (several claims in one call, a claim taken
over in between, acceptances riding the same call)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from gateways.core import markers as m
from shared import cache
from tests.integration import test_core_runtime as base

pytestmark = pytest.mark.timeout(60)
own_redis = base.own_redis  # test_core_runtime's private redis-server


@pytest.fixture
async def redis(own_redis: str) -> AsyncIterator[aioredis.Redis]:
    client = cache.connect(own_redis)
    yield client
    await client.aclose()


def _markers(redis: aioredis.Redis, owner: str = "") -> m.SendMarkers:
    run = uuid.uuid4().hex[:8]
    return m.SendMarkers(redis, 600, keys=m.MarkerKeys.for_channel(f"calls{run}"),
                         owner=owner or f"proc-{run}")


async def _calls(redis: aioredis.Redis) -> dict[str, int]:
    stats = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def test_a_fresh_claim_is_one_command_per_job(redis: aioredis.Redis) -> None:
    """No marker there (every job of a first delivery): SET NX takes it; the marker is not
    read first (before: a GET and a SET per job)."""
    markers = _markers(redis)
    await markers.claim_many([("warm", 1, None)])  # the script loaded
    before = await _calls(redis)
    claims = await markers.claim_many([(f"job-{i}", 1, None) for i in range(50)])
    after = await _calls(redis)
    assert [cl.claimed for cl in claims] == [True] * 50
    assert all(cl.previous is None for cl in claims)
    assert after.get("set", 0) - before.get("set", 0) == 50
    assert after.get("get", 0) - before.get("get", 0) == 1  # the epoch, read with the claim
    for i in range(50):
        assert (m.decode(await redis.get(markers.key(f"job-{i}", 1))) or {}).get("s") == m.HELD


async def test_a_standing_marker_is_still_judged(redis: aioredis.Redis) -> None:
    """Held by a live claimant: not taken; held by a process that is gone or deferred:
    taken over (the marker found is returned); an outcome stands."""
    markers = _markers(redis)
    await markers.heartbeat()
    [mine] = await markers.claim_many([("held-live", 1, None)])
    gone = _markers(redis, owner=f"gone-{uuid.uuid4().hex[:6]}")
    gone.keys = markers.keys
    await gone.claim_many([("held-gone", 1, None)])
    await markers.set_many([("done", 1, m.SUBMITTED, {"k": 2, "p": "id-1"}),
                            ("later", 1, m.DEFERRED, {"code": "x", "d": "busy"})])
    claims = await markers.claim_many([(k, 1, None) for k in ("held-live", "held-gone", "done", "later")])
    assert mine.claimed
    assert [cl.claimed for cl in claims] == [False, True, False, True]
    assert [(cl.previous or {}).get("s") for cl in claims] == [m.HELD, m.HELD, m.SUBMITTED, m.DEFERRED]
    assert claims[0].alive and not claims[2].alive


async def test_the_gate_sends_each_claims_values_once(redis: aioredis.Redis) -> None:
    """200 jobs of one claim about to be written: the call carries the claim's held and
    written values once, not once per job (before: ~140 bytes more per job)."""
    markers = _markers(redis)
    holder = markers.holder()
    await markers.claim_many([(f"job-{i}", 1, None) for i in range(200)], holder)
    tickets = [m.Ticket(markers.key(f"job-{i}", 1), holder) for i in range(200)]
    await markers.mark_written(tickets[:1])  # the script loaded, the gate's connection open
    before = (await redis.info("stats"))["total_net_input_bytes"]
    assert await markers.mark_written(tickets[1:]) == [True] * 199
    sent = (await redis.info("stats"))["total_net_input_bytes"] - before
    per_job = sent / 199
    assert per_job < len(markers.key("job-100", 1)) + 20, per_job
    states = {(m.decode(await redis.get(t.key)) or {}).get("s") for t in tickets}
    assert states == {m.WRITTEN}


async def test_the_gate_answers_each_job_of_several_claims_in_one_call(redis: aioredis.Redis) -> None:
    """Jobs of three claims interleaved in one call, one job taken over by another claim in
    between, two acceptances riding the call: each job written with its own claim's value
    where its claim still holds, refused where it does not."""
    markers = _markers(redis)
    holders = [markers.holder() for _ in range(3)]
    names = [f"job-{i}" for i in range(9)]
    for i, h in enumerate(holders):
        await markers.claim_many([(n, 1, None) for n in names[i::3]], h)
    thief = markers.holder()
    await redis.set(markers.key("job-4", 1), thief.held)  # job-4 (claim 1's) taken over
    tickets = [m.Ticket(markers.key(n, 1), holders[i % 3]) for i, n in enumerate(names)]
    await markers.claim_many([("acc-1", 1, None), ("acc-2", 1, None)])
    accepted = [(markers.key("acc-1", 1), '{"s":"submitted","t":1.0,"k":2,"p":"a"}'),
                (markers.key("acc-2", 1), '{"s":"submitted","t":1.0,"k":2,"p":"b"}')]
    answers = await markers.mark_written(tickets, accepted)
    assert answers == [True] * 4 + [False] + [True] * 4
    for i, t in enumerate(tickets):
        value = (await redis.get(t.key)).decode()
        if i == 4:
            assert value == thief.held
        else:
            assert value.startswith('{"s":"written","t":') and value.endswith(holders[i % 3].ident)
    assert [(await redis.get(k)).decode() for k, _ in accepted] == [v for _, v in accepted]
    assert await markers.mark_written([], accepted[:1]) == []  # acceptances alone
