"""The gateway's Redis state; everything on the per-message path goes through batches
(one pipeline per batch, see `Batcher`).

Send marker `herald:smpp:job:<message_id>:<attempt>` (SET NX before any submit_sm):
  pending:<unix time>           a submit is in flight (or the process died while it was)
  ok:<route>|<id>,<id>,...      accepted by the SMSC (one id per part)
  failed:<status>               refused permanently (command_status as 0x%08X, or a code)
  unknown:<reason>              sent but no answer: it may or may not have been accepted

Id mapping `herald:smpp:id:<route>:<key>` -> JSON Mapping of one part, under the key(s)
the route's IdFormat gives. Part states of a multipart message:
`herald:smpp:parts:<message_id>:<attempt>` hash part -> stat. Messages awaiting a final
receipt: zset `herald:smpp:await` (member <message_id>:<attempt>, score = when to assume
delivery) with the identity in hash `herald:smpp:await:info`. Replies: the last message
sent from a sender to a number, `herald:smpp:last:<sender>:<digits>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

import redis.asyncio as aioredis

PREFIX = "herald:smpp:"
AWAIT_KEY = PREFIX + "await"
AWAIT_INFO = PREFIX + "await:info"

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Mapping:
    message_id: str
    campaign_id: str
    workspace_id: str
    attempt: int
    smsc_id: str
    to: str = ""
    variant: str = ""
    part: int = 1
    parts: int = 1
    route: str = "default"
    provider_id: str = ""     # id of the first part: the message's provider_message_id
    submitted_at: float = 0.0
    sender: str = ""

    def dumps(self) -> bytes:
        # Not dataclasses.asdict: it deep-copies and showed up in the gateway's profile.
        return json.dumps({k: getattr(self, k) for k in _MAPPING_FIELDS}, separators=(",", ":")).encode()

    @classmethod
    def loads(cls, raw: bytes | str) -> Mapping:
        data = json.loads(raw)
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})

    def for_part(self, part: int, smsc_id: str) -> Mapping:
        return replace(self, part=part, smsc_id=smsc_id)

    @property
    def job(self) -> str:
        return f"{self.message_id}:{self.attempt}"


_MAPPING_FIELDS = tuple(Mapping.__dataclass_fields__)


@dataclass(frozen=True)
class Marker:
    state: str   # pending, ok, failed, unknown
    value: str   # timestamp, route|smsc ids, status or reason

    @classmethod
    def parse(cls, raw: bytes | str) -> Marker:
        text = raw.decode() if isinstance(raw, bytes) else raw
        state, _, value = text.partition(":")
        return cls(state, value)

    def age(self) -> float:
        """Seconds since a pending marker was written."""
        try:
            return time.time() - float(self.value)
        except ValueError:
            return float("inf")

    @property
    def route_and_ids(self) -> tuple[str, list[str]]:
        route, sep, ids = self.value.rpartition("|")
        return (route if sep else "default"), [i for i in ids.split(",") if i]


def job_key(message_id: str, attempt: int) -> str:
    return f"{PREFIX}job:{message_id}:{attempt}"


def id_key(route: str, key: str) -> str:
    return f"{PREFIX}id:{route}:{key}"


def parts_key(message_id: str, attempt: int) -> str:
    return f"{PREFIX}parts:{message_id}:{attempt}"


def last_key(sender: str, digits: str) -> str:
    return f"{PREFIX}last:{sender.lower()}:{digits}"


class Batcher(Generic[T, R]):
    """Group commit: items submitted while a flush is running (or in the same loop
    iteration) go together into the next call of `flush(items) -> results`. At most
    `concurrency` flushes run at once. A failed flush fails every item of its batch."""

    def __init__(self, flush: Callable[[list[T]], Awaitable[list[R]]], max_size: int = 512,
                 concurrency: int = 2) -> None:
        self.flush = flush
        self.max_size = max_size
        self.concurrency = concurrency
        self._items: list[tuple[T, asyncio.Future[R]]] = []
        self._running = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, item: T) -> asyncio.Future[R]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        self._items.append((item, fut))
        if not self._scheduled and self._running < self.concurrency:
            self._scheduled = True
            loop.call_soon(self._kick)
        return fut

    def _kick(self) -> None:
        self._scheduled = False
        while self._items and self._running < self.concurrency:
            batch, self._items = self._items[:self.max_size], self._items[self.max_size:]
            self._running += 1
            task = asyncio.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self.flush([item for item, _ in batch])
        except Exception as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
        else:
            for (_, fut), res in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(res)
        finally:
            self._running -= 1
            if self._items:
                self._kick()


class Store:
    def __init__(self, redis: aioredis.Redis, mapping_ttl: int, dedup_ttl: int,
                 mo_link_ttl: int = 604800) -> None:
        self.redis = redis
        self.mapping_ttl = mapping_ttl
        self.dedup_ttl = dedup_ttl
        self.mo_link_ttl = mo_link_ttl
        self.claims: Batcher[tuple[str, int], Marker | None] = Batcher(self._claim_many)
        self.lookups: Batcher[str, bytes | None] = Batcher(self._get_many)

    # --- send markers -------------------------------------------------------------------
    @staticmethod
    def job_key(message_id: str, attempt: int) -> str:
        return job_key(message_id, attempt)

    async def claim(self, message_id: str, attempt: int) -> Marker | None:
        """Write a pending marker; None if we own the job now, else the existing marker."""
        return await self.claims.submit((message_id, attempt))

    async def _claim_many(self, jobs: list[tuple[str, int]]) -> list[Marker | None]:
        pending = f"pending:{time.time():.3f}"
        pipe = self.redis.pipeline(transaction=False)
        for mid, att in jobs:
            pipe.set(job_key(mid, att), pending, nx=True, ex=self.dedup_ttl)
        won = await pipe.execute()
        out: list[Marker | None] = [None] * len(jobs)
        lost = [i for i, ok in enumerate(won) if not ok]
        if lost:
            values = await self.redis.mget([job_key(*jobs[i]) for i in lost])
            for i, raw in zip(lost, values, strict=True):
                # Expired between the two calls: nobody holds it; claim it alone.
                out[i] = Marker.parse(raw) if raw is not None else await self._claim_one(*jobs[i])
        return out

    async def _claim_one(self, message_id: str, attempt: int) -> Marker | None:
        key = job_key(message_id, attempt)
        if await self.redis.set(key, f"pending:{time.time():.3f}", nx=True, ex=self.dedup_ttl):
            return None
        raw = await self.redis.get(key)
        return Marker.parse(raw) if raw is not None else None

    async def mark(self, message_id: str, attempt: int, state: str, value: str) -> None:
        await self.redis.set(job_key(message_id, attempt), f"{state}:{value}", ex=self.dedup_ttl)

    async def release(self, message_id: str, attempt: int) -> None:
        """The SMSC definitely did not take the message: let a redelivery submit it."""
        await self.redis.delete(job_key(message_id, attempt))

    def pipe_mark(self, pipe: Any, message_id: str, attempt: int, state: str, value: str) -> None:
        pipe.set(job_key(message_id, attempt), f"{state}:{value}", ex=self.dedup_ttl)

    # --- id mappings and follow-up state ------------------------------------------------
    def pipe_mappings(self, pipe: Any, parts: list[tuple[Mapping, list[str]]],
                      await_until: float | None) -> None:
        """Mappings of every part (the id as given with SET, its other readings with SET NX
        so a real id never loses its entry to another id's reinterpretation), the reply
        link, and the assumed-delivery deadline."""
        for m, keys in parts:
            value = m.dumps()
            pipe.set(id_key(m.route, keys[0]), value, ex=self.mapping_ttl)
            for alt in keys[1:]:
                pipe.set(id_key(m.route, alt), value, ex=self.mapping_ttl, nx=True)
        first = parts[0][0]
        if first.sender and first.to:
            pipe.set(last_key(first.sender, _digits(first.to)), first.for_part(1, first.provider_id).dumps(),
                     ex=self.mo_link_ttl)
        if await_until is not None:
            pipe.zadd(AWAIT_KEY, {first.job: await_until})
            pipe.hset(AWAIT_INFO, first.job, first.dumps())

    async def save_mapping(self, mapping: Mapping, keys: list[str]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        self.pipe_mappings(pipe, [(mapping, keys)], None)
        await pipe.execute()

    async def _get_many(self, keys: list[str]) -> list[bytes | None]:
        return list(await self.redis.mget(keys))

    async def lookup(self, route: str, key: str) -> Mapping | None:
        raw = await self.lookups.submit(id_key(route, key))
        return Mapping.loads(raw) if raw is not None else None

    async def record_parts(self, items: list[tuple[Mapping, str]]) -> list[dict[int, str]]:
        """Record the final stat of parts of multipart messages; the states of every part
        seen so far, per item. HSET then HGETALL on one connection: whichever receipt is
        recorded last sees all parts."""
        pipe = self.redis.pipeline(transaction=False)
        for m, stat in items:
            key = parts_key(m.message_id, m.attempt)
            pipe.hset(key, str(m.part), stat)
            pipe.expire(key, self.mapping_ttl)
            pipe.hgetall(key)
        res = await pipe.execute()
        return [{int(k): v.decode() for k, v in res[3 * i + 2].items()} for i in range(len(items))]

    async def settled(self, jobs: list[str]) -> None:
        """Final receipts published: stop waiting for them (best effort)."""
        if not jobs:
            return
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrem(AWAIT_KEY, *jobs)
        pipe.hdel(AWAIT_INFO, *jobs)
        with contextlib.suppress(Exception):
            await pipe.execute()

    async def due(self, now: float, limit: int = 1000) -> list[Mapping]:
        """Messages whose assumed-delivery deadline has passed."""
        jobs = await self.redis.zrangebyscore(AWAIT_KEY, "-inf", now, start=0, num=limit)
        if not jobs:
            return []
        infos = await self.redis.hmget(AWAIT_INFO, jobs)
        out = [Mapping.loads(raw) for raw in infos if raw is not None]
        orphans = [j for j, raw in zip(jobs, infos, strict=True) if raw is None]
        if orphans:
            await self.redis.zrem(AWAIT_KEY, *orphans)
        return out

    async def last_sent(self, sender: str, digits: str) -> Mapping | None:
        raw = await self.redis.get(last_key(sender, digits))
        return Mapping.loads(raw) if raw is not None else None


def _digits(number: str) -> str:
    return "".join(ch for ch in number if ch.isdigit())
