"""The gateway's Redis state: per-job send markers and SMSC id -> message mappings.

Send marker `herald:smpp:job:<message_id>:<attempt>`, written with SET NX before the
submit_sm so a redelivered job never reaches the SMSC twice. Values:
  pending:<unix time>  submit in flight (or the process died while it was)
  ok:<smsc id>         accepted by the SMSC
  failed:<status>      refused permanently (command_status as 0x%08X)
  unknown:<reason>     sent but no answer: it may or may not have been accepted

Mapping `herald:smpp:id:<normalised id>` -> JSON of the message's identity, stored under
every interpretation of the id (see receipts.id_keys). The id as given is written with a
plain SET; the other interpretations with SET NX, so a real id never loses its entry to
another id's reinterpretation.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

import redis.asyncio as aioredis

from gateways.smpp import receipts

PREFIX = "herald:smpp:"


@dataclass(frozen=True)
class Mapping:
    message_id: str
    campaign_id: str
    workspace_id: str
    attempt: int
    smsc_id: str
    to: str = ""
    variant: str = ""

    def dumps(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def loads(cls, raw: bytes) -> Mapping:
        return cls(**json.loads(raw))


@dataclass(frozen=True)
class Marker:
    state: str   # pending, ok, failed, unknown
    value: str   # timestamp, smsc id, status or reason

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


class Store:
    def __init__(self, redis: aioredis.Redis, mapping_ttl: int, dedup_ttl: int) -> None:
        self.redis = redis
        self.mapping_ttl = mapping_ttl
        self.dedup_ttl = dedup_ttl

    @staticmethod
    def job_key(message_id: str, attempt: int) -> str:
        return f"{PREFIX}job:{message_id}:{attempt}"

    @staticmethod
    def id_key(normalised_id: str) -> str:
        return f"{PREFIX}id:{normalised_id}"

    async def claim(self, message_id: str, attempt: int) -> Marker | None:
        """Write a pending marker; None if we own the job now, else the existing marker."""
        key = self.job_key(message_id, attempt)
        if await self.redis.set(key, f"pending:{time.time():.3f}", nx=True, ex=self.dedup_ttl):
            return None
        raw = await self.redis.get(key)
        if raw is None:  # expired between the two calls: try once more
            return await self.claim(message_id, attempt)
        return Marker.parse(raw)

    async def mark(self, message_id: str, attempt: int, state: str, value: str) -> None:
        await self.redis.set(self.job_key(message_id, attempt), f"{state}:{value}", ex=self.dedup_ttl)

    async def release(self, message_id: str, attempt: int) -> None:
        """The SMSC definitely did not take the message: let a redelivery submit it."""
        await self.redis.delete(self.job_key(message_id, attempt))

    async def save_mapping(self, mapping: Mapping) -> None:
        keys = receipts.id_keys(mapping.smsc_id)
        value = mapping.dumps()
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self.id_key(keys[0]), value, ex=self.mapping_ttl)
        for alt in keys[1:]:
            pipe.set(self.id_key(alt), value, ex=self.mapping_ttl, nx=True)
        await pipe.execute()

    async def lookup(self, smsc_id: str) -> Mapping | None:
        raw = await self.redis.get(self.id_key(receipts.normalise_id(smsc_id)))
        return Mapping.loads(raw) if raw is not None else None
