"""The postback channel on the channel runtime, against real NATS, Redis and an HTTP
receiver: each job's rendered JSON reaches its URL exactly once, a 5xx is retried, and what
can never be delivered fails with its reason."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from gateways.core.markers import MarkerKeys, SendMarkers
from gateways.core.recorder import RetryPolicy
from gateways.core.runtime import Runtime, RuntimeConfig
from gateways.postback.channel import SPEC, PostbackChannel
from gateways.postback.receiver import Receiver
from shared import bus, eventbatch
from shared.adapters import nats_internals

K = e.MessageEventKind
F = c.FailureCategory


def job(i: int, url: str, body: str, **fields: str) -> e.MessageJob:
    j = e.MessageJob(message_id=str(uuid.uuid4()), campaign_id="cp-postback", workspace_id="ws",
                     channel=c.CHANNEL_POSTBACK, attempt=1, to=url, sender="hooks",
                     fields={"first_name": f"Ann {i}", **fields})
    SPEC.set_content(j, {"text": body})
    return j


async def test_each_body_once_retried_after_5xx_and_failures_named(js, redis_client) -> None:  # type: ignore[no-untyped-def]
    events: dict[str, list[e.MessageEvent]] = {}
    nc = nats_internals.connection_of(js)

    async def on_event(msg) -> None:  # type: ignore[no-untyped-def]
        for ev in eventbatch.events_of(msg):
            events.setdefault(ev.message_id, []).append(ev)

    sub = await nc.subscribe("events.message.>", cb=on_event)
    durable = f"postback-{uuid.uuid4().hex[:8]}"
    async with Receiver(fail_first=1) as rx:
        body = '{"hello": {{ first_name | tojson }}, "n": {{ n }}}'
        good = [job(i, rx.url(f"/hook/{i}"), body, n=str(i)) for i in range(5)]
        not_json = job(9, rx.url("/hook/x"), '{"hello": {{ first_name }}}')
        gone = job(10, "http://127.0.0.1:9/nothing-listens", '{"a": 1}')
        channel = PostbackChannel(timeout=5, concurrency=8)
        markers = SendMarkers(redis_client, 600, keys=MarkerKeys.for_channel(durable))
        rt = Runtime(js, markers, channel, RuntimeConfig(
            durable, SPEC.subject, policy=RetryPolicy(max_attempts=2, retry_base=0.2)))
        stop = asyncio.Event()
        runner = asyncio.create_task(rt.run(stop))
        try:
            for j in [*good, not_json, gone]:
                await bus.publish(js, SPEC.subject, j, f"{j.message_id}:1")

            def final(mid: str) -> e.MessageEvent | None:
                return next((ev for ev in events.get(mid, []) if ev.kind in (
                    K.MESSAGE_EVENT_KIND_SUBMITTED, K.MESSAGE_EVENT_KIND_FAILED)), None)

            for _ in range(200):
                if all(final(j.message_id) for j in [*good, not_json, gone]):
                    break
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await runner
            await channel.close()
            with contextlib.suppress(Exception):
                await js.delete_consumer(bus.JOBS_STREAM, durable)
            await sub.unsubscribe()
    # Every rendered body arrived exactly once, at its own URL, after one 503 each.
    got = {r.path: r for r in rx.received}
    assert len(rx.received) == len(good) == len(got)
    for i, j in enumerate(good):
        r = got[f"/hook/{i}"]
        assert r.body == {"hello": f"Ann {i}", "n": i}
        assert r.key == f"{j.message_id}:1" and r.headers["X-Herald-Sender"] == "hooks"
        assert rx.posts[r.key] == 2  # the 503, then the retry
        kinds = [ev.kind for ev in events[j.message_id]]
        assert kinds == [K.MESSAGE_EVENT_KIND_DEFERRED, K.MESSAGE_EVENT_KIND_SUBMITTED], kinds
        assert final(j.message_id).channel == c.CHANNEL_POSTBACK  # type: ignore[union-attr]
    bad = final(not_json.message_id)
    assert bad is not None and bad.failure_category == F.FAILURE_CATEGORY_CONTENT_REJECTED
    assert "not JSON" in bad.error_description and rx.posts[f"{not_json.message_id}:1"] == 0
    down = final(gone.message_id)
    assert down is not None and down.kind == K.MESSAGE_EVENT_KIND_FAILED
    assert "unreachable" in down.error_description
