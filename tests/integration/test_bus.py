import asyncio

from herald.v1 import events_pb2 as e

from shared import bus


async def test_publish_dedup_and_pull_loop(js) -> None:  # type: ignore[no-untyped-def]
    job = e.MessageJob(message_id="m-1", to="+447700900001", text="hi", attempt=1)
    await bus.publish(js, "jobs.sms", job, "m-1:1")
    await bus.publish(js, "jobs.sms", job, "m-1:1")  # same Nats-Msg-Id: dropped
    await bus.publish(js, "jobs.sms", job, "m-1:2")  # operator retry: goes through
    seen: list[str] = []
    stop = asyncio.Event()

    async def handler(msg) -> None:  # type: ignore[no-untyped-def]
        seen.append(bus.parse(msg, e.MessageJob).message_id)
        if len(seen) == 2:
            stop.set()

    await asyncio.wait_for(
        bus.pull_loop(js, stream=bus.JOBS_STREAM, durable="t-sms", subject="jobs.sms",
                      handler=handler, stop=stop), 10)
    assert seen == ["m-1", "m-1"]
    # Work queue: acked jobs leave the stream (acks are asynchronous, so allow a moment).
    for _ in range(50):
        if (await js.stream_info(bus.JOBS_STREAM)).state.messages == 0:
            break
        await asyncio.sleep(0.05)
    assert (await js.stream_info(bus.JOBS_STREAM)).state.messages == 0
    await js.delete_consumer(bus.JOBS_STREAM, "t-sms")
