"""`SmppClient`: one bind of a route -- a transceiver session, or a transmitter+receiver
pair -- kept up with reconnects (exponential backoff with jitter); its submits go through
the queue of session_writer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import weakref
from collections import deque

from gateways.smpp import metrics, pdu
from gateways.smpp.session_config import ClientConfig
from gateways.smpp.session_errors import BindFailed, ConnectionLost, NotBound, ResponseTimeout
from gateways.smpp.session_link import Session
from gateways.smpp.session_pacing import TokenBucket
from gateways.smpp.session_reader import DeliverHandler, DeliverSink, sink_from_handler
from gateways.smpp.session_writer import Gate, SubmitItem, SubmitQueue

log = logging.getLogger("herald.smpp.session")

# route -> its live binds (metrics.BindConfigCollector reads it when scraped)
CLIENTS_BY_ROUTE: dict[str, weakref.WeakSet[SmppClient]] = {}


def _window_gauge(label: str, client: SmppClient) -> None:
    """herald_smpp_window_in_use{route} sums the binds' counters when scraped (no gauge
    update per PDU)."""
    clients = CLIENTS_BY_ROUTE.get(label)
    if clients is None:
        clients = CLIENTS_BY_ROUTE[label] = weakref.WeakSet()
        metrics.WINDOW_IN_USE.labels(label).set_function(lambda: sum(c.in_use for c in clients))
    clients.add(client)


class SmppClient(SubmitQueue):
    """One bind: keeps its session(s) bound and writes queued submits while the window has
    room, the token bucket allows and no throttling pause runs. Items queued while no
    session is bound wait for the next bind, at most response_timeout (then NotBound:
    nothing was sent)."""

    def __init__(self, cfg: ClientConfig, on_deliver: DeliverHandler | DeliverSink,
                 gate: Gate | None = None) -> None:
        self.cfg = cfg
        self.on_deliver = sink_from_handler(on_deliver)
        self.gate = gate
        self._gating: list[SubmitItem] = []  # waiting for the next gate call (window slots taken)
        self._gate_task: asyncio.Task[None] | None = None
        self.window_size = cfg.window
        self.in_use = 0  # submits written and awaiting their response (or their bucket slot)
        self.bucket = TokenBucket(cfg.throughput)
        self.session: Session | None = None     # submits go here (trx or tx)
        self.receiver: Session | None = None    # rx of a pair
        self.bound = asyncio.Event()
        self.binds = 0  # successful binds so far (tests and logs)
        self.paused_until = 0.0
        self._queue: deque[SubmitItem] = deque()
        self._timer: asyncio.TimerHandle | None = None  # a pause or a bucket slot to wait for
        self._held: SubmitItem | None = None  # popped, its bucket slot reserved
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._expiry: asyncio.Task[None] | None = None
        self._label = cfg.name or "default"
        _window_gauge(self._label, self)

    def start(self) -> asyncio.Task[None]:
        """Start connecting (idempotent)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run())
            self._expiry = asyncio.create_task(self._expire_unbound())
        return self._task

    async def _open(self) -> list[Session]:
        if self.cfg.bind_mode == "pair":
            tx = await Session.open(self.cfg, self.on_deliver, "transmitter")
            try:
                rx = await Session.open(self.cfg, self.on_deliver, "receiver")
            except BaseException:
                await tx.close(unbind=True, drain=0)
                raise
            return [tx, rx]
        return [await Session.open(self.cfg, self.on_deliver, self.cfg.bind_mode)]

    async def _run(self) -> None:
        delay = self.cfg.reconnect_min
        while not self._stop.is_set():
            try:
                sessions = await self._open()
            except BindFailed as exc:
                metrics.BIND_ATTEMPTS.labels(pdu.status_name(exc.status)).inc()
                log.error("%s", exc)
            except (OSError, TimeoutError, ResponseTimeout, ConnectionLost, NotBound,
                    pdu.ProtocolError) as exc:
                metrics.BIND_ATTEMPTS.labels("connect_failed").inc()
                log.warning("cannot bind to %s:%s: %s", self.cfg.host, self.cfg.port, exc)
            else:
                metrics.BIND_ATTEMPTS.labels("ok").inc()
                self.session = sessions[0]
                self.receiver = sessions[1] if len(sessions) > 1 else None
                self.binds += 1
                self.bound.set()
                self._pump()  # submits queued while unbound
                metrics.BINDS_UP.labels(self._label).inc()
                delay = self.cfg.reconnect_min
                waits = [asyncio.create_task(self._stop.wait()),
                         *(asyncio.create_task(s.closed.wait()) for s in sessions)]
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for w in waits:
                    w.cancel()
                self.bound.clear()
                metrics.BINDS_UP.labels(self._label).dec()
                lost = [s for s in sessions if s.closed.is_set()]
                for s in lost:
                    log.warning("session lost: %s", s.close_reason, extra={"route": self._label})
                # Stopping: the caller drained the window first, so unbind politely. A pair
                # whose other half died is unbound too before both are re-opened.
                await asyncio.gather(*(s.close(unbind=not s.closed.is_set()) for s in sessions))
                self.session = self.receiver = None
                if self._stop.is_set():
                    return
                if not lost:
                    continue
            # Jitter so replicas do not reconnect in lock step.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, self.cfg.reconnect_max)

    async def wait_bound(self, timeout: float) -> bool:
        if self.bound.is_set():
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.bound.wait(), timeout)
        return self.bound.is_set()

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        if self._expiry is not None:
            self._expiry.cancel()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._gate_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._gate_task
        self._fail_queued(float("inf"), "the SMPP client is closing")
