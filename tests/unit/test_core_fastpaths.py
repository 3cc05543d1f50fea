"""The channel runtime's fast paths against the plain way of doing the same thing: outcome
markers joined by hand equal json.dumps, outcome events built from the fields set equal
the event with every field given, the group commit's futureless puts, the write gate's
single-job commits next to writes of many."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from gateways.core import events, markers
from gateways.core.gate import CLAIM_LOST, STOPPING, WriteGate
from gateways.core.group import GroupCommit
from gateways.core.outcome import Outcome, as_marker, from_marker, marker_value
from shared import states

K = e
OUTCOMES = [
    Outcome(K.MESSAGE_EVENT_KIND_SUBMITTED, provider_id="39F99DD5", route="uk", parts=2,
            extra="39F99DD5,39F99DD6"),
    Outcome(K.MESSAGE_EVENT_KIND_SUBMITTED, "250", "2.0.0 Ok: queued as \"x\"", provider_id="<a@b>"),
    Outcome(K.MESSAGE_EVENT_KIND_FAILED, "0x0000000B", "ESME_RINVDSTADR: Ungültige Adresse ☎",
            c.FAILURE_CATEGORY_INVALID_ADDRESS, route="fr", parts=1),
    Outcome(K.MESSAGE_EVENT_KIND_DEFERRED, "451", "try\\later\n", route="relay"),
]


@pytest.mark.parametrize("o", OUTCOMES)
def test_outcome_markers_are_json_dumps_of_the_marker(o: Outcome) -> None:
    made = marker_value(markers.SUBMITTED, 1796000000.25, o)
    assert made == json.dumps({"s": markers.SUBMITTED, "t": 1796000000.25, **as_marker(o)},
                              separators=(",", ":"))
    assert made == markers.marker_json(markers.SUBMITTED, 1796000000.25, as_marker(o))
    assert from_marker(json.loads(made)) == o


def reference_event(job: e.MessageJob, o: Outcome, msg_id: str, at: datetime | None) -> bytes:
    """Every field given, as the runtime built events before its fast path."""
    ok = o.kind == K.MESSAGE_EVENT_KIND_SUBMITTED
    ev = events.message_event(
        o.kind, channel=c.CHANNEL_SMS, message_id=job.message_id, campaign_id=job.campaign_id,
        workspace_id=job.workspace_id, event_id=events.stable_event_id(msg_id), occurred_at=at,
        error_code="" if ok else o.code, error_description="" if ok else o.description,
        failure_category=o.category, provider_message_id=o.provider_id, variant=job.variant,
        to=job.to, attempt=job.attempt, route=o.route, parts=o.parts)
    return ev.SerializeToString()


@pytest.mark.parametrize("o", OUTCOMES)
def test_outcome_events_equal_the_event_with_every_field_given(o: Outcome) -> None:
    job = e.MessageJob(message_id="m1", campaign_id="c1", workspace_id="w1", to="+447700900123",
                       variant="B", attempt=2)
    at = datetime(2026, 11, 30, 12, 0, 1, 500000, tzinfo=UTC)
    subject, data, msg_id = events.outcome_item(c.CHANNEL_SMS, job, o, "m1:x:2", at)
    assert (subject, msg_id) == (states.message_subject(o.kind), "m1:x:2")
    assert data == reference_event(job, o, "m1:x:2", at)


async def test_group_commit_tells_each_flush_once_and_never_splits_an_add() -> None:
    flushed: list[list[int]] = []
    heard: list[tuple[list[int], str | None]] = []

    async def flush(items: list[int]) -> None:
        flushed.append(items)
        if 13 in items:
            raise ConnectionError("no")

    group: GroupCommit[int] = GroupCommit(
        flush, max_size=3, done=lambda items, exc: heard.append((items, exc and str(exc))))
    for i in range(2):
        group.put(i)
    fut = group.add([10, 11, 12, 20])  # larger than max_size: one flush of its own
    for i in range(2, 5):
        group.put(i)
    await fut
    await asyncio.sleep(0.01)
    assert [10, 11, 12, 20] in flushed and all(len(f) <= 3 or f == [10, 11, 12, 20] for f in flushed)
    assert sorted(i for f in flushed for i in f) == [0, 1, 2, 3, 4, 10, 11, 12, 20]
    group.put(13)
    failing = group.add([14])
    with pytest.raises(ConnectionError):
        await failing
    await asyncio.sleep(0)
    assert sorted(i for items, exc in heard if exc is None for i in items) == [
        0, 1, 2, 3, 4, 10, 11, 12, 20]
    assert [items for items, exc in heard if exc is not None] == [[13, 14]]


class _Markers:
    """mark_written's answers by ticket key (True: still this claim's), or a failure."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.lost: set[str] = set()
        self.fail: Exception | None = None
        self.hold: asyncio.Event | None = None

    async def mark_written(self, tickets: list[markers.Ticket],
                           accepted: object = ()) -> list[bool]:
        self.calls.append([t.key for t in tickets])
        if self.hold is not None:
            await self.hold.wait()
        if self.fail is not None:
            raise self.fail
        return [t.key not in self.lost for t in tickets]


class _Item:
    def __init__(self, key: str) -> None:
        self.ticket = markers.Ticket(key, markers.Holder("o", "1"))


async def test_write_gate_answers_single_commits_and_writes_of_many_in_one_call() -> None:
    stub = _Markers()
    stub.lost = {"b", "y"}
    gate = WriteGate(stub)  # type: ignore[arg-type]
    a, b = _Item("a"), _Item("b")
    many = [_Item("x").ticket, None, _Item("y").ticket]
    got = await asyncio.gather(gate.commit(a), gate.commit_many(many), gate.commit(b),
                               gate.commit(a))
    assert stub.calls == [["a", "x", "y", "b", "a"]]  # one Redis call, in the callers' order
    assert got == [None, [None, None, CLAIM_LOST], CLAIM_LOST, None]
    stub.fail = ConnectionError("redis away")
    failed = await asyncio.gather(gate.commit(a), gate.commit_many(many))
    assert failed == ["send marker not recorded: ConnectionError: redis away",
                      ["send marker not recorded: ConnectionError: redis away", None,
                       "send marker not recorded: ConnectionError: redis away"]]


async def test_write_gate_stopped_mid_call_refuses_every_waiting_write() -> None:
    stub = _Markers()
    stub.hold = asyncio.Event()
    gate = WriteGate(stub)  # type: ignore[arg-type]
    one = asyncio.ensure_future(gate.commit(_Item("a")))
    many = asyncio.ensure_future(gate.commit_many([_Item("b").ticket, _Item("c").ticket]))
    await asyncio.sleep(0.01)
    assert gate._task is not None  # noqa: SLF001 - the flush in flight, cancelled as on stop
    gate._task.cancel()  # noqa: SLF001
    assert await one == STOPPING
    assert await many == [STOPPING, STOPPING]


def test_a_marker_keeps_only_the_fields_set() -> None:
    """An SMPP acceptance's marker: no empty code, text or category (they were ~40 bytes of
    every SMS's marker in Redis)."""
    o = Outcome(K.MESSAGE_EVENT_KIND_SUBMITTED, provider_id="39F99DD5", route="uk", parts=1,
                extra="39F99DD5")
    made = marker_value(markers.SUBMITTED, 1796000000.25, o)
    assert json.loads(made) == {"s": "submitted", "t": 1796000000.25, "k": o.kind, "p": "39F99DD5",
                                "r": "uk", "n": 1, "x": "39F99DD5"}
    assert from_marker(json.loads(made)) == o


@pytest.mark.parametrize("o", OUTCOMES)
def test_a_marker_written_with_every_field_reads_the_same(o: Outcome) -> None:
    """Markers of earlier releases carry every field, empty ones too: read alike."""
    full = {"s": markers.SUBMITTED, "t": 1796000000.25, "k": o.kind, "code": o.code,
            "d": o.description, "cat": o.category, "p": o.provider_id, "r": o.route}
    if o.parts:
        full["n"] = o.parts
    if o.extra:
        full["x"] = o.extra
    assert from_marker(full) == o
