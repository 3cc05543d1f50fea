"""The SMPP gateway: jobs.sms on the channel runtime (gateways.core.runtime) with the SMPP
channel (channel.py). The runtime's in-flight cap is counted in jobs (in_flight_cap), its
send markers keep this gateway's key names and its liveness key HERALD_SMPP_HOLDER_TTL."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid

import redis.asyncio as aioredis
from nats.js import JetStreamContext

from gateways.core.markers import SendMarkers
from gateways.core.runtime import Runtime, RuntimeConfig
from gateways.smpp import outcomes
from gateways.smpp.binds import Route
from gateways.smpp.channel import MARKER_KEYS, SmppChannel
from gateways.smpp.config import GatewayConfig
from gateways.smpp.logs import log
from gateways.smpp.routes import RouteConfig
from gateways.smpp.session import ClientConfig, SmppClient
from gateways.smpp.store import Store
from shared.adapters import nats_internals

__all__ = ["Gateway", "GatewayConfig", "in_flight_cap", "job_ack_wait"]


def job_ack_wait(response_timeout: float) -> float:
    return max(30.0, 4 * response_timeout)


def in_flight_cap(routes: list[RouteConfig]) -> int:
    """Jobs to hold between fetch and ack: 4x the window slots (a job stays in flight until
    its outcome is recorded and acked, and at a few thousand msg/s the record step's Redis
    and NATS round trips hold ~2 windows' worth; with 2x the windows stood empty, 4x gave
    +13 % msg/s). When every route is rate-limited, no more than a quarter of ack_wait's
    worth at that rate, so queued jobs are never redelivered while they wait their turn."""
    cap = max(64, 4 * sum(r.client.window * r.binds for r in routes))
    rates = [r.client.throughput * r.binds for r in routes]
    if rates and all(rate > 0 for rate in rates):
        ack_wait = job_ack_wait(max(r.client.response_timeout for r in routes))
        cap = min(cap, max(1, int(sum(rates) * ack_wait / 4)))
    return cap


class Gateway(Runtime):
    """What `python -m gateways.smpp` runs (and tests run in process)."""

    channel: SmppChannel

    def __init__(self, js: JetStreamContext, redis: aioredis.Redis,
                 routes: list[RouteConfig] | ClientConfig,
                 cfg: GatewayConfig | None = None) -> None:
        cfg = cfg or GatewayConfig()
        if isinstance(routes, ClientConfig):
            routes = [RouteConfig(name=routes.name or "default", client=routes)]
        self.route_cfgs = routes
        self.store = Store(redis, cfg.mapping_ttl, cfg.mo_link_ttl)
        channel = SmppChannel(nats_internals.connection_of(js), self.store, routes, cfg)
        response_timeout = max(r.client.response_timeout for r in routes)
        ack_wait = job_ack_wait(response_timeout)
        # A held/written marker older than this is stale even if its holder still lives (a
        # job in hand is acked or handed back well within it).
        stale_after = 2 * ack_wait + cfg.record_retry_for
        # This process in its send markers; alive while herald:smpp:holder:<holder> is.
        holder = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        markers = SendMarkers(redis, cfg.dedup_ttl, lease=stale_after, owner=holder,
                              keys=MARKER_KEYS, live_ttl=cfg.holder_ttl,
                              legacy=outcomes.legacy_marker)
        self.max_in_flight = cap = cfg.max_in_flight or in_flight_cap(routes)
        super().__init__(js, markers, channel, RuntimeConfig(
            durable=cfg.consumer, subject=cfg.subject, lease=stale_after,
            batch=cfg.fetch_batch, max_in_flight=cap, ack_wait=ack_wait,
            max_ack_pending=max(10000, 2 * cap), record_retry_for=cfg.record_retry_for,
            # the windows drain: as long as a submit, its retries and its recording can take
            drain_timeout=3 * response_timeout + cfg.record_retry_for + 5))

    @property
    def routes(self) -> dict[str, Route]:
        return self.channel.routes

    @property
    def client(self) -> SmppClient:
        """The first bind of the first route (single-route callers and tests)."""
        return next(iter(self.routes.values())).clients[0]

    async def wait_bound(self, timeout: float) -> bool:
        results = await asyncio.gather(*(r.wait_bound(timeout) for r in self.routes.values()))
        return all(results)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume jobs until `stop` is set; then finish the jobs in hand (the windows
        drain), answer the receipts being handled, and unbind."""
        log.info("gateway process named in send markers", extra={"holder": self.markers.owner})
        await super().run(stop)
