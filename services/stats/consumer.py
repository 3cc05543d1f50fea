"""Durable pull consumers on EVENTS: "<durable>" on events.message.> (one Redis call of the
event script per fetched batch of messages, each one event or a batch of them, then the
messages are acked; every event is idempotent, so a
batch that fails half way is simply redelivered) and "<durable>-campaigns" on events.campaign.>
(records which workspace owns each campaign, so reads can tell unknown campaigns apart, and
the lifecycle status each campaign entered: services.stats.campaign_status)."""

from __future__ import annotations

import asyncio
import logging
import time

from herald.v1 import events_pb2 as e
from nats.js import JetStreamContext

from services.stats import campaign_status, settings
from services.stats.aggregator import Aggregator
from services.stats.metrics import APPLY_LATENCY, EVENT_LAG, EVENTS
from shared import bus, eventbatch, states
from shared.consumer import ACK, NAK, TERM, Durable, Verdict, per_message
from shared.consumer import Consumer as BusConsumer
from shared.jsfast import JsMsg
from shared.timeutil import Clock

log = logging.getLogger("herald.stats.consumer")
SUBJECT = "events.message.>"
CAMPAIGN_SUBJECT = "events.campaign.>"


def _stream_seq(msg: JsMsg) -> int:
    try:
        return msg.metadata.stream_seq
    except Exception:  # not a JetStream delivery (no ack subject to read it from)
        return 0


_KIND_LABELS: dict[int, str] = {}


def _kind_label(kind: int) -> str:
    label = _KIND_LABELS.get(kind)
    if label is None:
        if kind not in e.MessageEventKind.values():
            return "unknown"  # not remembered: any number may come from the bus
        label = _KIND_LABELS[kind] = states.kind_name(kind)
    return label


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
        durable = Durable(bus.EVENTS_STREAM, self.campaigns_durable, CAMPAIGN_SUBJECT,
                          batch=self.batch)
        handler = per_message(self.handle_campaign, self.campaigns_durable)
        await BusConsumer(self.js, durable, handler, prefetch=0).run(stop)

    async def handle_campaign(self, msg: JsMsg) -> None:
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
        durable = Durable(bus.EVENTS_STREAM, self.durable, SUBJECT,
                          ack_wait=settings.ACK_WAIT.get_float(),
                          max_ack_pending=max(20000, self.batch * 4), batch=self.batch)
        # One batch requested ahead: the next is on the socket while Redis applies this one.
        await BusConsumer(self.js, durable, self.handle, prefetch=1).run(stop)

    async def handle(self, msgs: list[JsMsg]) -> list[Verdict]:
        """One Redis call for the fetched messages' events (a message may be a batch of them:
        shared.eventbatch); unparsable messages are terminated; if the apply fails, the rest
        of the fetch is redelivered after 1 s."""
        verdicts: list[Verdict] = []
        events: list[e.MessageEvent] = []
        for m in msgs:
            try:
                events += eventbatch.events_of(m)
                verdicts.append(ACK)
            except bus.PermanentError as exc:
                log.error("dropping unparsable event", extra={
                    "subject": m.subject, "error_type": type(exc).__name__, "error": str(exc)})
                verdicts.append(TERM)
        if not events:
            return verdicts
        start = time.perf_counter()
        try:
            results = await self.agg.apply_batch(events, self.clock.now())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("stats batch failed; redelivering", extra={
                "events": len(events), "error_type": type(exc).__name__, "error": str(exc)})
            retry = NAK(1.0)
            return [retry if v is ACK else v for v in verdicts]
        APPLY_LATENCY.observe(time.perf_counter() - start)
        now = self.clock.time()
        counts: dict[tuple[int, str], int] = {}  # one counter increment per kind and result
        for ev, result in zip(events, results, strict=True):
            key = (ev.kind, result)
            counts[key] = counts.get(key, 0) + 1
            if result == "applied" and ev.occurred_at.seconds:
                EVENT_LAG.observe(max(now - ev.occurred_at.ToNanoseconds() / 1e9, 0.0))
        for (kind, result), n in counts.items():
            EVENTS.labels(_kind_label(kind), result).inc(n)
        return verdicts
