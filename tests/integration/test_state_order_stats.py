"""The message state order (tests/vectors/state_order.py) against the real stats aggregator
on a real redis-server, and against shared.states.resulting, the rule the aggregator's Lua
and the ledger's SQL are built from."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from services.stats.aggregator import Aggregator
from shared import states
from tests.vectors import state_order as vectors


def test_vectors_cover_every_status_and_kind() -> None:
    statuses = {states.status_name(s) for s in states.RANK if s != c.MESSAGE_STATUS_UNSPECIFIED}
    assert set(vectors.STATUSES) == statuses
    kinds = {states.kind_name(k) for k in e.MessageEventKind.values() if k}
    assert set(vectors.STATUS_KINDS) | set(vectors.COUNTER_KINDS) == kinds
    assert {vectors.kind(k) for k in vectors.STATUS_KINDS} == set(states.KIND_STATUS)
    assert all(states.KIND_STATUS[vectors.kind(k)] == vectors.status(s)
               for k, s in vectors.STATUS_KINDS.items())


def test_the_python_rule_gives_every_vector() -> None:
    wrong = []
    for case in vectors.CASES:
        got = (vectors.status(case.current), case.current_attempt)
        if case.incoming in vectors.STATUS_KINDS:
            new = states.KIND_STATUS[vectors.kind(case.incoming)]
            got = states.resulting(*got, new, case.incoming_attempt)
        if got != (vectors.status(case.expected), case.expected_attempt):
            wrong.append((case.id, states.status_name(got[0]), got[1]))
    assert wrong == []


async def test_the_stats_aggregator_gives_every_vector(redis_client) -> None:  # type: ignore[no-untyped-def]
    prefix = f"so{uuid.uuid4().hex[:8]}:"
    agg = Aggregator(redis_client, prefix, message_ttl=600, event_ttl=600, daily_ttl=600)
    await agg.load()
    events, ids = [], []
    for i, case in enumerate(vectors.CASES):
        mid = f"m{i}-{uuid.uuid4().hex[:6]}"
        ids.append(mid)
        for n, (kind, attempt) in enumerate(((vectors.setup_kind(case.current), case.current_attempt),
                                              (case.incoming, case.incoming_attempt))):
            events.append(e.MessageEvent(
                event_id=f"{mid}-{n}", kind=vectors.kind(kind), message_id=mid, campaign_id="cso",
                workspace_id="ws-so", channel=c.CHANNEL_SMS, attempt=attempt))
    # Applied in order in one pipelined batch, as the consumer does.
    results = await agg.apply_batch(events, datetime.now(UTC))
    assert "ignored" not in results
    found = {m.message_id: m.status for m in await agg.message_states(ids)}
    async with redis_client.pipeline(transaction=False) as pipe:
        for mid in ids:
            pipe.hget(agg.message_key(mid), "at")
        attempts = [max(int(a or 0), 1) for a in await pipe.execute()]
    wrong = []
    for case, mid, attempt in zip(vectors.CASES, ids, attempts, strict=True):
        got = (found.get(mid, 0), attempt)
        if got != (vectors.status(case.expected), case.expected_attempt):
            wrong.append((case.id, states.status_name(got[0]), got[1], case.why))
    assert wrong == []
    # The counters agree with the states: each message counted once, in its final status.
    counters, _ = await agg.campaign("cso")
    assert counters["total"] == len(vectors.CASES)
    for name in vectors.STATUSES:
        want = sum(1 for case in vectors.CASES if case.expected == name)
        assert counters[name.lower()] == want, name
