"""Redis send markers: a redelivered job must not reach the relay twice, and a job that never
reached it must not be reported as possibly sent.

Key herald:email:send:<message_id>:<attempt> (attempt = the job's operator attempt, so an
operator retry is a new send). Value: JSON {"s": state, "t": unix time, ...}.
  held       claimed when the batch is fetched, by one claim token ("o" the worker process,
             "b" the batch): protects the job against a second worker; the relay has nothing
  written    moved from held (compare-and-set on the claim token) immediately before the end
             of the message's DATA is written: from here on the relay may accept it
  deferred   last try got a 4xx / connection error; the next delivery may claim it again
  submitted / failed   final; a redelivery only re-publishes the recorded outcome
  sending    written by gateways before "held"/"written" existed: treated like "written"
A redelivery that finds "held" of a stopped worker (its liveness key herald:email:live:<o>
expired, or older than the lease) takes the claim over and sends cleanly: the compare-and-set
at the write keeps the old holder from sending it too. "written" without an outcome, left by
a stopped worker, is the only case where the relay may have the message and we cannot know:
the job is then ABANDONED rather than risking a second copy (an operator retry, attempt+1,
sends it again deliberately).

The scripts read keys they are not given (the claimant's liveness key, shared.epoch's key):
Herald's Redis is one instance, not a cluster.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any, NamedTuple

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from shared import epoch

log = logging.getLogger("herald.email.dedup")

LIVE_PREFIX = "herald:email:live:"
LIVE_TTL = 10  # seconds a worker's liveness key outlives its last heartbeat

# Per key: take it when absent, deferred, or held by a claimant that is gone. Returns
# {epoch or false, {taken, previous, claimant alive}...}: the epoch is read in the same
# atomic step, so a data set lost between two epoch refreshes is seen with the markers.
_CLAIM_MANY = """
local now = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
local out = {redis.call('GET', ARGV[5])}
local n = #KEYS / 2
for i = 1, n do
  local k = KEYS[2 * i - 1]
  local v = redis.call('GET', k)
  local take = true
  local alive = 0
  if v then
    local ok, st = pcall(cjson.decode, v)
    if ok and type(st) == 'table' then
      local s = st['s']
      local o = st['o']
      if type(o) == 'string' and redis.call('EXISTS', ARGV[6] .. o) == 1 then alive = 1 end
      if s == 'held' then
        take = alive == 0 or (now - (tonumber(st['t']) or 0)) >= lease
      elseif s ~= 'deferred' then
        take = false
      end
    else
      take = false
    end
  end
  if take then
    redis.call('SET', k, ARGV[1], 'EX', ARGV[2])
    if ARGV[6 + i] ~= '' then redis.call('SET', KEYS[2 * i], ARGV[6 + i], 'EX', ARGV[2]) end
    if v then out[i + 1] = {1, v} else out[i + 1] = {1} end
  else
    out[i + 1] = {0, v, alive}
  end
end
return out
"""
# Relay acceptances recorded (SET, the first ARGV[2] keys), then held -> written for the rest,
# only where the marker is still exactly this claim's "held" value: one call per gate flush.
_GATE_MANY = """
local n = tonumber(ARGV[2])
for i = 1, n do redis.call('SET', KEYS[i], ARGV[i + 2], 'EX', ARGV[1]) end
local out = {}
for i = n + 1, #KEYS do
  local at = n + 2 + 2 * (i - n) - 1
  if redis.call('GET', KEYS[i]) == ARGV[at] then
    redis.call('SET', KEYS[i], ARGV[at + 1], 'EX', ARGV[1])
    out[i - n] = 1
  else
    out[i - n] = 0
  end
end
return out
"""
# Outcomes (SET) and released claims (DEL where still this claim's "held" value) together.
_RECORD_MANY = """
local n = tonumber(ARGV[2])
for i = 1, n do redis.call('SET', KEYS[i], ARGV[i + 2], 'EX', ARGV[1]) end
for i = n + 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i + 2] then redis.call('DEL', KEYS[i]) end
end
return #KEYS
"""
_str = json.encoder.encode_basestring_ascii  # what json.dumps does to a str
json_str = _str


def _value(v: Any) -> str:
    t = type(v)
    if t is str:
        return _str(v)
    if t is int:
        return str(v)
    return json.dumps(v)


def marker_json(state: str, now: float, data: dict[str, Any]) -> str:
    """json.dumps({"s": state, "t": now, **data}) for flat markers, joined directly:
    4.3 -> 1.5 us per marker measured here (json.dumps builds an encoder per call)."""
    if "s" in data or "t" in data:
        return json.dumps({"s": state, "t": now, **data})
    return "".join([f'{{"s":{_str(state)},"t":{now!r}',
                    *[f",{_str(k)}:{_value(v)}" for k, v in data.items()], "}"])


def flat_json(data: dict[str, Any]) -> str:
    """Compact JSON of a flat dict of str/int values, joined directly (cf. marker_json)."""
    return "{" + ",".join([f"{_str(k)}:{_value(v)}" for k, v in data.items()]) + "}"


CHUNK = 512  # jobs per script call: Redis serves nothing else while a script runs

HELD = "held"
WRITTEN = "written"
SENDING = "sending"  # older gateways' "written"
DEFERRED = "deferred"
SUBMITTED = "submitted"
FAILED = "failed"


class Claim(NamedTuple):
    """A NamedTuple: one per job, built in a fraction of a frozen dataclass's time."""

    claimed: bool
    previous: dict[str, Any] | None  # the marker found (None if there was none)
    alive: bool = False  # not claimed: the marker's claimant still beats its liveness key


class Claims(list[Claim]):
    """claim_many's answer: one Claim per job, and the epoch Redis held at that moment."""

    epoch: float | None = None  # shared.epoch's value seen with the markers (None: missing)


class Holder:
    """One claim token (a worker process and one of its batches): the "held" and "written"
    values of its markers, so the move to written is a compare-and-set on the exact value."""

    __slots__ = ("owner", "token", "held", "_written_prefix", "_written_suffix")

    def __init__(self, owner: str, token: str) -> None:
        self.owner = owner
        self.token = token
        ident = f',"o":{_str(owner)},"b":{_str(token)}}}'
        self.held = f'{{"s":"{HELD}","t":{time.time()!r}{ident}'
        self._written_prefix = f'{{"s":"{WRITTEN}","t":'
        self._written_suffix = ident

    def written(self, now: float) -> str:
        return f"{self._written_prefix}{now!r}{self._written_suffix}"


class Ticket(NamedTuple):
    """What the write gate needs to move one job's marker from held to written."""

    key: str
    holder: Holder


def key(message_id: str, attempt: int) -> str:
    return f"herald:email:send:{message_id}:{attempt}"


def ref_key(message_id: str) -> str:
    """What a bounce or complaint needs to know about a message (address, contact,
    campaign, workspace, variant), written with the first claim of a send."""
    return f"herald:email:ref:{message_id}"


def _decode(raw: Any) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        out = json.loads(raw)
    except ValueError:
        return {"s": "corrupt"}
    return out if isinstance(out, dict) else {"s": "corrupt"}


class SendMarkers:
    def __init__(self, redis: aioredis.Redis, ttl: int, lease: float = 150.0,
                 owner: str | None = None) -> None:
        self.redis = redis
        self.ttl = ttl
        self.lease = lease  # a held marker older than this may be taken over even if alive
        self.owner = owner or uuid.uuid4().hex[:16]  # this process, for liveness
        self._tokens = 0
        self._claim_many = redis.register_script(_CLAIM_MANY)
        self._gate_many = redis.register_script(_GATE_MANY)
        self._record_many = redis.register_script(_RECORD_MANY)
        # mark_written runs once per group of mails about to be written, one call at a time
        # (WriteGate): on a connection of its own it skips redis-py's pool checkout, measured
        # 115 -> 61 us of CPU per round trip here.
        self._gate_conn: Any = None

    # --- liveness -----------------------------------------------------------------
    @property
    def live_key(self) -> str:
        return LIVE_PREFIX + self.owner

    async def heartbeat(self) -> None:
        """Tell other workers this process still holds its claims (call every second or so)."""
        await self.redis.set(self.live_key, "1", ex=LIVE_TTL)

    async def retire(self) -> None:
        """Stopping cleanly: claims left behind may be taken over at once."""
        await self.redis.delete(self.live_key)

    def holder(self) -> Holder:
        self._tokens += 1
        return Holder(self.owner, f"{self._tokens:x}")

    # --- claims -------------------------------------------------------------------
    async def claim(self, message_id: str, attempt: int, ref: dict[str, str] | None = None) -> Claim:
        [claim] = await self.claim_many([(message_id, attempt, ref)])
        return claim

    async def claim_many(self, items: Sequence[tuple[str, int, dict[str, str] | str | None]],
                         holder: Holder | None = None) -> Claims:
        """One round trip for a batch of jobs (the Lua script is atomic per key): each job's
        marker becomes `holder`'s "held" unless another claim or an outcome stands. A ref
        may come as its JSON already (flat_json's output)."""
        holder = holder or self.holder()
        out = Claims()
        now = repr(time.time())
        for at in range(0, len(items), CHUNK):
            keys: list[str] = []
            args: list[str | int | float] = [holder.held, self.ttl, now, self.lease, epoch.KEY,
                                             LIVE_PREFIX]
            for message_id, attempt, ref in items[at:at + CHUNK]:
                keys.append(key(message_id, attempt))
                keys.append(ref_key(message_id))
                args.append(ref if ref.__class__ is str else flat_json(ref) if ref else "")  # type: ignore[arg-type]
            res = await self._claim_many(keys=keys, args=args)
            raw_epoch = res[0]
            out.epoch = float(raw_epoch) if raw_epoch else None
            for r in res[1:]:
                if int(r[0]):
                    out.append(Claim(True, _decode(r[1]) if len(r) > 1 else None))
                else:
                    out.append(Claim(False, _decode(r[1]) if len(r) > 1 else None,
                                     len(r) > 2 and bool(int(r[2]))))
        return out

    async def mark_written(self, tickets: Sequence[Ticket],
                           accepted: Sequence[tuple[str, str]] = ()) -> list[bool]:
        """held -> written for each ticket still holding its claim; False where the claim was
        taken over or lost (the message must then not be sent). `accepted` (key, marker
        value) are outcomes the relay already gave, recorded in the same call."""
        now = time.time()
        out: list[bool] = []
        for at in range(0, max(len(tickets), len(accepted), 1), CHUNK):
            chunk = tickets[at:at + CHUNK]
            done = accepted[at:at + CHUNK]
            if not chunk and not done:
                break
            args: list[str | int] = [self.ttl, len(done), *[v for _, v in done]]
            for t in chunk:
                args.append(t.holder.held)
                args.append(t.holder.written(now))
            res = await self._eval_on_gate_conn(
                self._gate_many, [k for k, _ in done] + [t.key for t in chunk], args)
            out.extend(bool(int(r)) for r in res)
        return out

    async def _eval_on_gate_conn(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """EVALSHA on the dedicated connection (loaded on NOSCRIPT); not for concurrent use."""
        pool = self.redis.connection_pool
        if self._gate_conn is None:
            self._gate_conn = await pool.get_connection("EVALSHA")
        conn = self._gate_conn
        try:
            for attempt in (1, 2):
                await conn.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
                try:
                    return await conn.read_response()
                except NoScriptError:  # Redis restarted or flushed its scripts
                    if attempt == 2:
                        raise
                    await conn.send_command("SCRIPT", "LOAD", script.script)
                    await conn.read_response()
        except BaseException:
            self._gate_conn = None  # in an unknown state: never reused
            await conn.disconnect()
            await pool.release(conn)
            raise
        raise AssertionError("unreachable")

    # --- outcomes -----------------------------------------------------------------
    async def set_many(self, items: Sequence[tuple[str, int, str, dict[str, Any]]],
                       release: Sequence[Ticket] = ()) -> None:
        """Record outcomes, and release claims that end without one (DEL where the marker
        is still that claim's "held" value), in one round trip per chunk."""
        if not items and not release:
            return
        now = time.time()
        sets = [(key(m, a), marker_json(state, now, data)) for m, a, state, data in items]
        rel = [(t.key, t.holder.held) for t in release]
        for at in range(0, max(len(sets), 1), CHUNK):
            chunk = sets[at:at + CHUNK]
            extra = rel if at == 0 else []
            await self._record_many(
                keys=[k for k, _ in chunk] + [k for k, _ in extra],
                args=[self.ttl, len(chunk), *[v for _, v in chunk], *[v for _, v in extra]])

    async def ref(self, message_id: str) -> dict[str, str] | None:
        raw = await self.redis.get(ref_key(message_id))
        if not raw:
            return None
        try:
            out = json.loads(raw)
        except ValueError:
            return None
        return out if isinstance(out, dict) else None

    async def set(self, message_id: str, attempt: int, state: str, **data: Any) -> None:
        value = json.dumps({"s": state, "t": time.time(), **data})
        await self.redis.set(key(message_id, attempt), value, ex=self.ttl)


class WriteGate:
    """Group commit of held -> written: every SMTP connection asks right before it writes the
    end of a message's DATA, and the requests that arrive together (the pool's connections
    and batches) go to Redis in one call. `commit(mail)` returns None when the mail may be
    written, else why not (the marker was taken over or lost, or Redis failed).

    The relay's 250 for a mail is recorded through the same calls (`accepted`): with
    pipelining it arrives just before the next mail's commit, so the outcome is in Redis
    within one round trip of the answer, at no extra call in steady state. A gateway killed
    mid-batch then leaves "written" without an outcome (ABANDONED on redelivery) only for
    mails whose answer had not arrived, instead of for every mail of the batch."""

    def __init__(self, markers: SendMarkers) -> None:
        self.markers = markers
        self._pending: list[tuple[Ticket, asyncio.Future[str | None]]] = []
        self._accepted: list[tuple[str, str]] = []
        self._task: asyncio.Task[None] | None = None
        self.calls = 0  # Redis round trips (tests, bench)

    async def commit(self, mail: Any) -> str | None:
        ticket: Ticket | None = mail.ticket
        if ticket is None:  # not a claimed job (tests, tools): nothing to record
            return None
        fut: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._pending.append((ticket, fut))
        self._schedule()
        return await fut

    def accepted(self, ticket: Ticket | None, outcome: dict[str, Any]) -> None:
        """The relay took the mail: record its outcome marker with the next flush (best
        effort; the batch's own record of outcomes follows and repeats it)."""
        if ticket is None:
            return
        self._accepted.append((ticket.key, marker_json(SUBMITTED, time.time(), outcome)))
        self._schedule()

    def _schedule(self) -> None:
        if self._task is None:  # runs on the next loop pass: it collects this pass's requests
            self._task = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        batch: list[tuple[Ticket, asyncio.Future[str | None]]] = []
        try:
            while self._pending or self._accepted:
                batch, self._pending = self._pending, []
                accepted, self._accepted = self._accepted, []
                self.calls += 1
                try:
                    done = await self.markers.mark_written([t for t, _ in batch], accepted)
                    answers: list[str | None] = [
                        None if ok else "send claim lost: another delivery took it over or "
                        "Redis lost it" for ok in done]
                except Exception as exc:  # Redis down: nothing may be written
                    reason = f"{type(exc).__name__}: {exc}"
                    log.warning("send markers not moved to written", extra={
                        "reason": reason, "jobs": len(batch), "accepted": len(accepted)})
                    answers = [f"send marker not recorded: {reason}"] * len(batch)
                for (_, fut), answer in zip(batch, answers, strict=True):
                    if not fut.done():
                        fut.set_result(answer)
        finally:
            self._task = None
            for _, fut in batch + self._pending:  # cancelled mid-flush: nobody may write
                if not fut.done():
                    fut.set_result("send marker not recorded: gateway stopping")
            self._pending = []
