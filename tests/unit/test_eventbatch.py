"""shared.eventbatch: packed batches read back as exactly the events packed, within limits,
with deterministic ids; single events and other subjects pass through."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from shared import bus, eventbatch, states


@dataclass
class Delivered:
    """What a consumer reads of a delivery: subject, data and headers."""

    subject: str
    data: bytes
    headers: dict[str, str] | None = None


def _event(i: int, kind: int = e.MESSAGE_EVENT_KIND_SUBMITTED, **fields: object) -> e.MessageEvent:
    ev = e.MessageEvent(event_id=f"ev-{i}", kind=kind, message_id=f"m-{i}",  # type: ignore[arg-type]
                        campaign_id="c-1", workspace_id="w", channel=c.CHANNEL_SMS,
                        **fields)  # type: ignore[arg-type]
    ev.occurred_at.FromSeconds(1_700_000_000 + i)
    return ev


def _item(ev: e.MessageEvent) -> eventbatch.Item:
    return states.message_subject(ev.kind), ev.SerializeToString(), f"{ev.message_id}:{ev.kind}"


def _read(packed: list[eventbatch.Packed]) -> list[tuple[str, list[e.MessageEvent]]]:
    out = []
    for p in packed:
        headers = {"Nats-Msg-Id": p[2], **(p[3] if len(p) == 4 else {})}  # type: ignore[misc]
        out.append((p[0], eventbatch.events_of(Delivered(p[0], p[1], headers))))
    return out


def _mixed() -> list[e.MessageEvent]:
    return [
        _event(1),
        _event(2, e.MESSAGE_EVENT_KIND_DELIVERED, carrier_result="DELIVRD", to="+447700900123"),
        _event(3, reply_text="Grüße, 你好 👋", reply_from="+44 7700", route="smsc-ü"),
        e.MessageEvent(),  # every field empty
        _event(4, e.MESSAGE_EVENT_KIND_FAILED, error_description="x" * 300, attempt=2),
        _event(5, e.MESSAGE_EVENT_KIND_DELIVERED, variant=""),
        _event(6, e.MESSAGE_EVENT_KIND_CLICKED, url="https://example.com/ä?q=1", link_index=3),
    ]


def test_packed_batches_read_back_as_the_events_packed() -> None:
    events = _mixed()
    items = [_item(ev) for ev in events]
    packed = eventbatch.pack(items, max_events=256)
    subjects = [p[0] for p in packed]
    # one bus message per subject, where its first event was
    assert subjects == list(dict.fromkeys(s for s, _d, _m in items))
    got = {s: evs for s, evs in _read(packed)}
    for subject in subjects:
        want = [ev for ev, (s, _d, _m) in zip(events, items, strict=True) if s == subject]
        assert got[subject] == want
        assert all(ev.SerializeToString() == w.SerializeToString()
                   for ev, w in zip(got[subject], want, strict=True))
    batches = [p for p in packed if len(p) == 4]
    assert batches and all(p[3] == {"Herald-Payload": "MessageEventBatch"} for p in batches)
    for p in batches:  # the framing is protobuf's own encoding of the repeated field
        evs = got[p[0]]
        assert p[1] == e.MessageEventBatch(events=evs).SerializeToString()


def test_a_lone_event_and_other_subjects_pass_through_in_place() -> None:
    a, b = _item(_event(1)), _item(_event(2))
    job = ("jobs.sms", b"\x01\x02", "m-9:0")
    campaign = ("events.campaign.status_changed", b"\x0a\x01x", "c-1:status")
    delivered = _item(_event(3, e.MESSAGE_EVENT_KIND_DELIVERED))
    packed = eventbatch.pack([job, a, campaign, delivered, b], max_events=256)
    assert packed[0] == job and packed[2] == campaign
    assert packed[3] == delivered  # alone of its kind: a plain event with its own id
    assert packed[1][0] == a[0] and len(packed[1]) == 4
    assert [ev.event_id for ev in _read([packed[1]])[0][1]] == ["ev-1", "ev-2"]
    assert eventbatch.pack([a], max_events=256) == [a]
    assert eventbatch.pack([a, b], max_events=1) == [a, b]  # 1: the form older releases read


def test_limits_on_events_and_bytes() -> None:
    items = [_item(_event(i)) for i in range(10)]
    packed = eventbatch.pack(items, max_events=4)
    assert [len(evs) for _s, evs in _read(packed)] == [4, 4, 2]
    assert [ev.event_id for _s, evs in _read(packed) for ev in evs] == [f"ev-{i}" for i in range(10)]
    # payloads past 127 and 16,383 bytes take two- and three-byte lengths
    big = [_item(_event(i, error_description="é" * (100 * i + 60 * (i % 3) * 100))) for i in range(12)]
    limit = 20_000
    packed = eventbatch.pack(big, max_events=256, max_bytes=limit)
    assert len(packed) > 1
    assert all(len(p[1]) <= limit for p in packed if len(p) == 4)
    assert [ev.SerializeToString() for _s, evs in _read(packed) for ev in evs] == [d for _s, d, _m in big]
    huge = _item(_event(99, error_description="z" * 30_000))
    packed = eventbatch.pack([big[0], huge, big[1]], max_events=256, max_bytes=limit)
    assert huge in packed  # larger than the limit: alone, as a plain event


def test_batch_ids_are_deterministic() -> None:
    items = [_item(_event(i)) for i in range(5)]
    first = eventbatch.pack(items, max_events=256)
    again = eventbatch.pack([(s, d, m) for s, d, m in items], max_events=256)
    assert first[0][2] == again[0][2] and first[0][2].startswith("batch:")
    assert eventbatch.pack(items[:4], max_events=256)[0][2] != first[0][2]
    assert eventbatch.pack(items[::-1], max_events=256)[0][2] == first[0][2]  # the same events


def test_the_setting_bounds_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    items = [_item(_event(i)) for i in range(5)]
    monkeypatch.setenv("HERALD_EVENT_BATCH_MAX", "2")
    assert [len(evs) for _s, evs in _read(eventbatch.pack(items))] == [2, 2, 1]
    monkeypatch.setenv("HERALD_EVENT_BATCH_MAX", "0")
    with pytest.raises(ValueError, match="HERALD_EVENT_BATCH_MAX"):
        eventbatch.pack(items)


def test_reading_single_events_and_corrupt_batches() -> None:
    ev = _event(1)
    single = Delivered("events.message.submitted", ev.SerializeToString(), {"Nats-Msg-Id": "x"})
    assert eventbatch.events_of(single) == [ev]
    assert eventbatch.events_of(Delivered(single.subject, single.data)) == [ev]
    corrupt = Delivered("events.message.submitted", b"\x0a\xff\xff\xff\x0f\x01",
                        {"Herald-Payload": "MessageEventBatch"})
    with pytest.raises(bus.PermanentError, match="not a MessageEventBatch"):
        eventbatch.events_of(corrupt)
    with pytest.raises(bus.PermanentError, match="not a MessageEvent"):
        eventbatch.events_of(Delivered(single.subject, b"\xff\xff"))
