"""Which message a delivery receipt is credited to.

The mapping under the receipt's id key (this process's memory first, then Redis) whose
destination is the receipt's source address; with an `auto` id format, failing that, one
under another reading of the id (ids an SMSC reissued after a restart are never credited
to an older message). Mappings are written after SUBMITTED so a receipt's event can never
overtake it on the bus: a receipt for a message still being sent or recorded here parks on
it. A receipt whose mapping is not visible yet waits in memory for it (woken when this
process maps the id, Redis looked up again meanwhile) for HERALD_SMPP_RECEIPT_MATCH_WAIT;
nothing relies on the SMSC resending a refused receipt (many never do). A final receipt
credited to no message is published as an UnmatchedReceipt on events.receipt.unmatched and
answered OK once stored: the campaigns ledger, the durable record, matches it by
provider_message_id and destination. Counted by reason and logged, rate-limited.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from gateways.core.group import GroupCommit
from gateways.core.retrying import retrying
from gateways.smpp import events, metrics, pdu, ratelog, receipts
from gateways.smpp.logs import cause, log
from gateways.smpp.store import Mapping, Store, id_key
from shared import jsfast
from shared.masking import mask_phone

if TYPE_CHECKING:
    from gateways.smpp.binds import Route

# Redis re-lookups of a receipt waiting for its mapping (another replica may be storing it;
# one of ours wakes it at once); the last delay repeats until receipt_match_wait is over.
RECEIPT_RECHECKS = (0.05, 0.2, 0.5, 1.0, 2.0)
MAX_WAITING_RECEIPTS = 20000  # receipts held for their mapping at once (memory bound)


@dataclass
class Receipt:
    route: Route
    receipt: receipts.Receipt
    reply: Callable[[int], None]
    source: str = ""  # the deliver_sm's source_addr: the handset the message went to
    tries: int = 0
    mapping: Mapping | None = None  # known already (it waited for its submit's recording)
    key: str = ""            # id key it is looked up by
    deadline: float = 0.0    # while waiting for its mapping: when to give up
    waiting: bool = False    # in Matcher._waiting (woken by a timer or by its mapping)
    mismatch: bool = False   # a mapping for its id exists, but for another number


class Holder(Protocol):
    """A job still sending later parts, or whose outcome is being recorded: receipts that
    came for its ids wait on it."""

    keys: list[str]
    parked: list[Receipt]


def answered(_status: int) -> None:
    """Reply of a receipt already answered."""


class Matcher:
    def __init__(self, store: Store, publisher: jsfast.Publisher, match_wait: float,
                 retry_for: float = 4.0) -> None:
        self.store = store
        self.retry_for = retry_for  # publishing an unmatched receipt, before refusing it
        self.publisher = publisher
        self.match_wait = match_wait
        # Where a receipt goes once it may be matched again (set by its owner: inbound.py).
        self.requeue: Callable[[Receipt], None] = self._unset
        # id key -> (job still sending later parts, or whose mappings are being written;
        # the part's mapping): receipts that find their id here wait in memory
        self.recording: dict[str, tuple[Holder, Mapping]] = {}
        # id key -> receipts whose mapping is not visible yet (see wait_for_mapping)
        self._waiting: dict[str, list[Receipt]] = {}
        self._n_waiting = 0
        self._unmatched_log = ratelog.RateLimitedLog(log)
        # Unmatched final receipts: published (events.receipt.unmatched) in batches, each
        # answered once its event is stored.
        self._unmatched_out: GroupCommit[Receipt] = GroupCommit(
            self._publish_unmatched, max_size=512, concurrency=2, done=self._unmatched_failed)

    @staticmethod
    def _unset(_it: Receipt) -> None:
        raise RuntimeError("Matcher.requeue is not set")

    # --- ids this process is mapping ----------------------------------------------------
    def register(self, key: str, holder: Holder, m: Mapping) -> None:
        """An id's mapping is known in this process: receipts waiting for it go on now."""
        self.recording[key] = (holder, m)
        if self._waiting:
            waiting = self._waiting.pop(key, None)
            if waiting:
                for it in waiting:
                    self._wake(it)

    def expect_part(self, job: Holder, m: Mapping, keys: list[str]) -> None:
        """A part accepted while later ones are still to go: its receipts wait on the job."""
        for k in keys:
            key = id_key(m.route, k)
            job.keys.append(key)
            self.register(key, job, m)

    def expect(self, job: Holder, parts: list[tuple[Mapping, list[str]]]) -> None:
        """Receipts for an accepted job's ids that come before its mappings are stored wait
        for them here instead of polling Redis."""
        for m, keys in parts:
            for k in keys:
                key = id_key(m.route, k)
                job.keys.append(key)
                self.register(key, job, m)

    def recorded(self, job: Holder, stored: bool) -> None:
        """The job's recording ended: early receipts go on with the mapping they waited
        for, or (not stored) look it up again like any other receipt."""
        recording = self.recording
        for key in job.keys:
            entry = recording.get(key)
            if entry is not None and entry[0] is job:
                del recording[key]
        job.keys.clear()
        for it in job.parked:
            if not stored:
                it.mapping = None
            self.requeue(it)
        job.parked.clear()

    # --- resolving receipts -------------------------------------------------------------
    async def resolve(self, items: list[Receipt]) -> list[tuple[Receipt, Mapping]]:
        """The mapping each receipt is credited to (see the module's docstring). A receipt
        that finds a mapping still being recorded here parks on it (_park); one that finds
        none waits for it (wait_for_mapping)."""
        found: list[tuple[Receipt, Mapping]] = []
        parked: list[tuple[Receipt, Holder, Mapping]] = []
        todo: list[Receipt] = []
        recording = self.recording
        same = receipts.same_number
        for it in items:
            if it.mapping is not None:
                found.append((it, it.mapping))
                continue
            if not it.key:
                it.key = id_key(it.route.name, it.route.id_format.lookup_key(it.receipt.message_id))
            entry = recording.get(it.key)
            if entry is not None:
                if same(it.source, entry[1].to):
                    parked.append(self._hold(it, *entry))
                    continue
                it.mismatch = True
            todo.append(it)
        if todo:
            others: list[Receipt] = []
            raws = await self.store.redis.mget([it.key for it in todo])
            for it, raw in zip(todo, raws, strict=True):
                if raw is not None:
                    m = Mapping.loads(raw)
                    if same(it.source, m.to):
                        found.append((it, m))
                        continue
                    it.mismatch = True
                if it.mismatch and it.route.id_format.auto:
                    others.append(it)
                else:
                    self.wait_for_mapping(it)
            if others:
                await self._resolve_other_readings(others, found, parked)
        if parked:
            await self._park(parked)
        return found

    async def _resolve_other_readings(self, items: list[Receipt], found: list[tuple[Receipt, Mapping]],
                                      parked: list[tuple[Receipt, Holder, Mapping]]) -> None:
        recording = self.recording
        same = receipts.same_number
        lookups: list[tuple[Receipt, list[str]]] = []
        for it in items:
            route = it.route.name
            keys = [id_key(route, k) for k in receipts.id_keys(it.receipt.message_id)[1:]]
            hit = next((entry for k in keys if (entry := recording.get(k)) is not None
                        and same(it.source, entry[1].to)), None)
            if hit is not None:
                parked.append(self._hold(it, *hit))
            elif keys:
                lookups.append((it, keys))
            else:
                self.wait_for_mapping(it)
        if not lookups:
            return
        raws = await self.store.redis.mget([k for _it, keys in lookups for k in keys])
        pos = 0
        for it, keys in lookups:
            chosen = None
            for raw in raws[pos:pos + len(keys)]:
                if raw is not None and same(it.source, (m := Mapping.loads(raw)).to):
                    chosen = m
                    break
            pos += len(keys)
            if chosen is None:
                self.wait_for_mapping(it)
            else:
                found.append((it, chosen))

    @staticmethod
    def _hold(it: Receipt, holder: Holder, m: Mapping) -> tuple[Receipt, Holder, Mapping]:
        """Parked on its holder at once, in the step that found the holder still recording:
        after an await the recording may be over, and a receipt parked then would never be
        requeued (left unanswered until the SMSC gives up on it)."""
        it.mapping = m
        holder.parked.append(it)
        return it, holder, m

    async def _park(self, parked: list[tuple[Receipt, Holder, Mapping]]) -> None:
        """Receipts for ids whose message is still being sent or recorded (parked by _hold):
        handled once its SUBMITTED event is out (recorded), so no receipt's event overtakes
        it. A part of a multipart message (whose later parts may wait seconds behind
        throttling) and an intermediate receipt are answered now, their final stat stored
        first: many SMSCs never resend a receipt that was refused or not answered in time."""
        early: list[Receipt] = []
        for it, _holder, m in parked:
            if m.parts > 1 or it.receipt.final is None:
                early.append(it)
        if not early:
            return
        finals = [(it.mapping, it.receipt.stat) for it in early
                  if it.mapping is not None and it.receipt.final is not None]
        if finals:
            await self.store.record_parts(finals)
        for it in early:
            it.reply(pdu.ESME_ROK)
            it.reply = answered

    # --- receipts waiting for their mapping ---------------------------------------------
    def wait_for_mapping(self, it: Receipt) -> None:
        """No mapping for this receipt yet (its submit_sm_resp may still be on its way, or
        another replica may be storing it): it waits in memory, woken as soon as this
        process maps the id (register) or by a timer to look in Redis again, for at most
        receipt_match_wait. Only then is it given up (unmatched): refusing it at once would
        lose it with the many SMSCs that never resend a refused receipt."""
        now = time.monotonic()
        if not it.deadline:
            it.deadline = now + self.match_wait
        if now >= it.deadline:
            self.unmatched(it, "address_mismatch" if it.mismatch else "unknown_id")
            return
        if self._n_waiting >= MAX_WAITING_RECEIPTS:  # published at once instead of waiting
            self.unmatched(it, "backlog")
            return
        delay = min(RECEIPT_RECHECKS[min(it.tries, len(RECEIPT_RECHECKS) - 1)], it.deadline - now)
        it.tries += 1
        it.waiting = True
        self._n_waiting += 1
        self._waiting.setdefault(it.key, []).append(it)
        asyncio.get_running_loop().call_later(delay, self._recheck, it)

    def _recheck(self, it: Receipt) -> None:
        if not it.waiting:
            return  # woken by its mapping already
        waiting = self._waiting.get(it.key)
        if waiting is not None:
            with contextlib.suppress(ValueError):
                waiting.remove(it)
            if not waiting:
                del self._waiting[it.key]
        self._wake(it)

    def _wake(self, it: Receipt) -> None:
        if it.waiting:
            it.waiting = False
            self._n_waiting -= 1
            self.requeue(it)

    def drop_waiting(self) -> None:
        """Stopping: receipts still waiting for a mapping are refused (their SMSC may resend
        them to another replica)."""
        waiting, self._waiting = self._waiting, {}
        for items in waiting.values():
            for it in items:
                it.waiting = False
                it.reply(pdu.ESME_RX_T_APPN)
        self._n_waiting = 0

    # --- receipts credited to no message ------------------------------------------------
    def unmatched(self, it: Receipt, reason: str) -> None:
        """A receipt credited to no message from Redis: counted by reason and logged
        (rate-limited). A final one is published as an UnmatchedReceipt for the campaigns
        ledger to match durably, and answered OK once stored (_publish_unmatched); an
        intermediate one (ENROUTE, ACCEPTD, ...) decides nothing and is answered at once."""
        metrics.RECEIPTS_UNMATCHED.labels(reason).inc()
        r = it.receipt
        self._unmatched_log.info(
            reason, f"delivery receipt matched no message ({reason})", reason=reason,
            route=it.route.name, smsc_id=r.message_id, stat=r.stat, source=mask_phone(it.source))
        if r.final is None:
            it.reply(pdu.ESME_ROK)
            return
        self._unmatched_out.put(it)

    async def _publish_unmatched(self, items: list[Receipt]) -> None:
        out = [events.unmatched_receipt(it.route.name, it.receipt.message_id, it.source,
                                        it.receipt.stat, it.receipt.err) for it in items]
        await retrying(lambda: events.publish_many(self.publisher, out), self.retry_for, log,
                       "publishing unmatched receipts")
        metrics.RECEIPTS_PUBLISHED_UNMATCHED.inc(len(items))
        for it in items:
            it.reply(pdu.ESME_ROK)

    @staticmethod
    def _unmatched_failed(items: list[Receipt], exc: Exception | None) -> None:
        if exc is None:  # answered by _publish_unmatched
            return
        log.warning("publishing unmatched receipts failed; asking the SMSC to resend them",
                    extra={"count": len(items), "error": cause(exc)})
        for it in items:
            it.reply(pdu.ESME_RX_T_APPN)
