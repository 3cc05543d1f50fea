"""A configured route and its running binds (SmppClient each), and which bind takes a job."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from gateways.smpp import metrics
from gateways.smpp.routes import IdFormat, RouteConfig
from gateways.smpp.session import SmppClient


class Route:
    def __init__(self, cfg: RouteConfig, sink: Callable[[RouteConfig], Any],
                 gate: Callable[[list[Any]], Awaitable[list[bool]]] | None = None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.id_format: IdFormat = cfg.id_format
        self.clients = [SmppClient(cfg.client, sink(cfg), gate) for _ in range(cfg.binds)]
        self._rr = 0
        self.ok_submits = 0  # accepted submit_sm not yet added to the counter (per batch)
        self.submits_ok = metrics.SUBMITS.labels(self.name, "ok")

    def start(self) -> None:
        for cl in self.clients:
            cl.start()

    def pick(self) -> SmppClient:
        """The bound bind with the most free window slots (round robin among equals); with
        none bound, the least loaded bind (its queue waits for the bind, see SmppClient)."""
        clients = self.clients
        n = len(clients)
        if n == 1:
            return clients[0]
        self._rr = (self._rr + 1) % n
        best: SmppClient | None = None
        for i in range(n):
            cl = clients[(self._rr + i) % n]
            if cl.bound.is_set() and (best is None or cl.free > best.free):
                best = cl
        return best or max(clients, key=lambda c: c.free)

    def flush_counters(self) -> None:
        """Accepted submits counted per message are added to the counter per batch."""
        n, self.ok_submits = self.ok_submits, 0
        if n:
            self.submits_ok.inc(n)

    @property
    def bound(self) -> bool:
        return any(cl.bound.is_set() for cl in self.clients)

    async def wait_bound(self, timeout: float) -> bool:
        results = await asyncio.gather(*(cl.wait_bound(timeout) for cl in self.clients))
        return all(results)

    async def close(self) -> None:
        await asyncio.gather(*(cl.close() for cl in self.clients))
