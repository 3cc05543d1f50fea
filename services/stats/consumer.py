"""Durable pull consumers on EVENTS: "<durable>" on events.message.> (one pipelined Redis
round trip per fetched batch, then the batch is acked; every event is idempotent, so a batch
that fails half way is simply redelivered) and "<durable>-campaigns" on events.campaign.>
(records which workspace owns each campaign, so reads can tell unknown campaigns apart, and
the lifecycle status each campaign entered: services.stats.campaign_status)."""

from __future__ import annotations

import asyncio
import logging
import time

from herald.v1 import events_pb2 as e
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig

from services.stats import campaign_status, settings
from services.stats.aggregator import Aggregator
from services.stats.metrics import APPLY_LATENCY, EVENT_LAG, EVENTS
from shared import bus, states
from shared.timeutil import Clock

log = logging.getLogger("herald.stats.consumer")
SUBJECT = "events.message.>"
CAMPAIGN_SUBJECT = "events.campaign.>"


def _stream_seq(msg: Msg) -> int:
    try:
        return int(msg.metadata.sequence.stream)
    except Exception:  # not a JetStream delivery (no reply subject to read it from)
        return 0


class Consumer:
    def __init__(self, agg: Aggregator, js: JetStreamContext, *, durable: str = "stats",
                 batch: int = 500, clock: Clock | None = None) -> None:
        self.agg = agg
        self.js = js
        self.durable = durable
        self.batch = batch
        self.clock = clock or Clock()

    @property
    def campaigns_durable(self) -> str:
        return f"{self.durable}-campaigns"

    async def run(self, stop: asyncio.Event) -> None:
        """Both consumers until stop is set; either one failing ends the other."""
        await bus.run_consumers({"stats-messages": self.run_messages(stop),
                                 "stats-campaigns": self.run_campaigns(stop)})

    async def run_campaigns(self, stop: asyncio.Event) -> None:
        await bus.pull_loop(self.js, stream=bus.EVENTS_STREAM, durable=self.campaigns_durable,
                            subject=CAMPAIGN_SUBJECT, handler=self.handle_campaign, stop=stop,
                            batch=self.batch)

    async def handle_campaign(self, msg: Msg) -> None:
        ev = bus.parse(msg, e.CampaignEvent)
        status = 0
        if ev.kind == e.CAMPAIGN_EVENT_KIND_STATUS_CHANGED:
            status = campaign_status.status_value(ev.status)
        if not status:  # another kind, or a status this version does not know: the owner only
            await self.agg.record_owner(ev.campaign_id, ev.workspace_id)
            return
        await self.agg.record_status(
            ev.campaign_id, ev.workspace_id, status,
            previous=campaign_status.status_value(ev.previous_status),
            at_us=ev.occurred_at.ToMicroseconds() if ev.HasField("occurred_at") else 0,
            seq=_stream_seq(msg))

    async def run_messages(self, stop: asyncio.Event) -> None:
        sub = await self.js.pull_subscribe(
            SUBJECT, durable=self.durable, stream=bus.EVENTS_STREAM,
            config=ConsumerConfig(durable_name=self.durable, filter_subject=SUBJECT,
                                  ack_wait=settings.ACK_WAIT.get_float(),
                                  max_ack_pending=max(20000, self.batch * 4)))
        bus.watch_lag(self.js, bus.EVENTS_STREAM, self.durable)
        while not stop.is_set():
            msgs = await self.fetch(sub)
            if msgs:
                await self.handle(msgs)
        await sub.unsubscribe()

    async def fetch(self, sub: JetStreamContext.PullSubscription) -> list[Msg]:
        """One batch, or [] when there is none. An idle consumer's fetch times out: normal,
        not logged (nats-py raises its own TimeoutError or a bare asyncio one, whose text is
        empty). Anything else is logged with its type and text, then retried after a pause."""
        try:
            return await sub.fetch(self.batch, timeout=0.5)
        except (NatsTimeout, TimeoutError):
            return []
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # connection trouble: the client reconnects by itself
            log.warning("stats fetch failed", extra={
                "consumer": self.durable, "error_type": type(exc).__name__, "error": str(exc)})
            await asyncio.sleep(0.5)
            return []

    async def handle(self, msgs: list) -> None:
        good, events = [], []
        for m in msgs:
            try:
                events.append(bus.parse(m, e.MessageEvent))
                good.append(m)
            except bus.PermanentError as exc:
                log.error("dropping unparsable event", extra={
                    "subject": m.subject, "error_type": type(exc).__name__, "error": str(exc)})
                bus.BUS_MESSAGES.labels(self.durable, "term").inc()
                await m.term()
        if not good:
            return
        start = time.perf_counter()
        try:
            results = await self.agg.apply_batch(events, self.clock.now())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("stats batch failed; redelivering", extra={
                "events": len(good), "error_type": type(exc).__name__, "error": str(exc)})
            bus.BUS_MESSAGES.labels(self.durable, "nak").inc(len(good))
            await asyncio.gather(*(m.nak(delay=1.0) for m in good), return_exceptions=True)
            return
        APPLY_LATENCY.observe(time.perf_counter() - start)
        now = self.clock.time()
        for ev, result in zip(events, results, strict=True):
            EVENTS.labels(states.kind_name(ev.kind) if ev.kind in e.MessageEventKind.values()
                          else "unknown", result).inc()
            if result == "applied" and ev.occurred_at.seconds:
                EVENT_LAG.observe(max(now - ev.occurred_at.ToNanoseconds() / 1e9, 0.0))
        await asyncio.gather(*(m.ack() for m in good))
        bus.BUS_MESSAGES.labels(self.durable, "ack").inc(len(good))
