"""The Redis side of RebuildCampaignStats: a campaign's counters rebuilt from ledger rows
into temporary keys, then swapped in atomically (no moment where the campaign reads zero).

Three steps, each one Lua script (atomic):
  begin   P rb:<campaign> = token (a newer rebuild of the same campaign supersedes this one)
  merge   per chunk of ledger rows: each message's hash P m:<id> becomes the monotonic merge
          of what Redis holds and what the ledger says (higher attempt wins, then higher rank;
          the ledger wins ties; views/clicks/replies: the larger count), is marked rb=token,
          and is counted into the new counters P rbc:<token>, P rbv:<token>:<variant>,
          P rbvs:<token>. From then on the aggregator script applies every event of a marked
          message to the new counters too, so nothing applied while the rebuild runs is lost.
  finish  the workspace totals move by (new - old), the new counters and variants are
          renamed over the old ones, per-day counters the ledger can tell (total by created
          day, sent by sent day, delivered by delivered day) are raised to the ledger's
          figure, the campaign's lifecycle status (cs/csat/csq) is carried over, and
          P rb:<campaign> is removed.
An interrupted rebuild leaves the old counters readable; its temporary keys expire
(TEMP_TTL) and running it again repairs everything.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from services.stats.aggregator import COUNTERS, NOT_PROCESSED, STATUS_FIELDS, lua_table
from shared import states

# Seconds the temporary keys of a rebuild live after its last step (refreshed at each step);
# P rb:<campaign> lives a minute less, so no event writes to a temporary key that is gone.
TEMP_TTL = 3600
FIELDS_PER_MESSAGE = 9


@dataclass(frozen=True)
class LedgerMessage:
    """What the ledger says about one message (CampaignService.ListMessages)."""

    message_id: str
    status: int
    attempt: int
    sent: bool  # sent_at is set (handed to the carrier/MTA in the current attempt)
    views: int
    clicks: int
    replies: int
    channel: int
    variant: str
    created_day: str = ""  # yyyymmdd (UTC) of created_at / sent_at / delivered_at, or ""
    sent_day: str = ""
    delivered_day: str = ""

    def days(self) -> list[tuple[str, str]]:
        """(yyyymmdd, daily counter) entries the ledger can date for this message."""
        out = [(self.created_day, "total"), (self.sent_day, "sent")]
        if self.status == states.S.MESSAGE_STATUS_DELIVERED:
            out.append((self.delivered_day, "delivered"))
        return [(d, f) for d, f in out if d]


class Superseded(Exception):
    """Another rebuild of the same campaign started after this one (it finishes the job)."""


_TABLES = f"""
local RANK = {lua_table(dict(states.RANK))}
local NAME = {lua_table(dict(STATUS_FIELDS))}
local SENT = {lua_table({s: True for s in states.SENT})}
local NOT_PROCESSED = {lua_table({s: True for s in NOT_PROCESSED})}
local COUNTERS = {{{", ".join(f'"{n}"' for n in COUNTERS)}}}
"""

MERGE = _TABLES + r"""
-- ARGV: 1 prefix, 2 campaign, 3 token, 4 workspace, 5 message ttl, 6 temp ttl, then per
-- message: id, status, attempt, sent (0|1), views, clicks, replies, channel, variant
local P, cid, tok, ws = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local tttl = tonumber(ARGV[6])
local rbkey = P .. 'rb:' .. cid
if redis.call('GET', rbkey) ~= tok then return -1 end
local ckey, vskey = P .. 'rbc:' .. tok, P .. 'rbvs:' .. tok
local touched = {}
local merged = 0
for i = 7, #ARGV, 9 do
  local mkey = P .. 'm:' .. ARGV[i]
  local lst, lat = tonumber(ARGV[i + 1]), math.max(tonumber(ARGV[i + 2]), 1)
  local lsent = ARGV[i + 3] == '1'
  local cur = redis.call('HMGET', mkey, 'st', 'at', 'snt', 'prc', 'v', 'k', 'r', 'o', 'mo', 'va',
                         'ch', 'rb')
  if cur[12] ~= tok then  -- a row read twice (paging) is counted once
    local live = cur[1] ~= false
    local cst, cat = tonumber(cur[1]) or 0, math.max(tonumber(cur[2]) or 0, 1)
    local st, at, snt, prc
    if (not live) or lat > cat or (lat == cat and RANK[lst] >= RANK[cst]) then
      st, at = lst, lat
      snt = lsent or SENT[lst] == true
      prc = not NOT_PROCESSED[lst]
    else  -- Redis is ahead of the ledger (an event the ledger has not recorded yet)
      st, at = cst, cat
      snt = cur[3] ~= false or SENT[cst] == true or (lat == cat and lsent)
      prc = cur[4] ~= false
    end
    local v = math.max(tonumber(cur[5]) or 0, tonumber(ARGV[i + 4]))
    local k = math.max(tonumber(cur[6]) or 0, tonumber(ARGV[i + 5]))
    local r = math.max(tonumber(cur[7]) or 0, tonumber(ARGV[i + 6]))
    local mo = tonumber(cur[9]) or 0
    -- Unique openers: Redis's flag, or opens beyond those known to be machine opens (the
    -- ledger does not tell machine opens apart).
    local o = cur[8] ~= false or v > mo
    local ck = k > 0
    local va = ARGV[i + 8]
    if va == '' then va = cur[10] or '' end
    local ch = ARGV[i + 7]
    if ch == '0' then ch = cur[11] or '0' end
    redis.call('HSET', mkey, 'st', st, 'at', at, 'v', v, 'k', k, 'r', r, 'va', va, 'ch', ch,
               'w', ws, 'c', cid, 'rb', tok)
    local function flag(f, on)
      if on then redis.call('HSET', mkey, f, 1) else redis.call('HDEL', mkey, f) end
    end
    flag('snt', snt); flag('prc', prc); flag('o', o); flag('ck', ck)
    redis.call('EXPIRE', mkey, ARGV[5])
    local keys = {ckey}
    if va ~= '' then
      keys[2] = P .. 'rbv:' .. tok .. ':' .. va
      redis.call('SADD', vskey, va)
      touched[keys[2]] = true
    end
    local function add(f, n)
      if n ~= 0 then for j = 1, #keys do redis.call('HINCRBY', keys[j], f, n) end end
    end
    add('total', 1)
    if NAME[st] then add(NAME[st], 1) end
    add('sent', snt and 1 or 0); add('processed', prc and 1 or 0)
    add('views', v); add('viewed', o and 1 or 0); add('machine_opens', mo)
    add('clicks', k); add('clicked', ck and 1 or 0); add('replies', r)
    merged = merged + 1
  end
end
redis.call('HSET', ckey, 'ws', ws)
touched[ckey] = true
touched[vskey] = true
for key, _ in pairs(touched) do redis.call('EXPIRE', key, tttl) end
redis.call('EXPIRE', rbkey, tttl - 60)
return merged
"""

FINISH = _TABLES + r"""
-- ARGV: 1 prefix, 2 campaign, 3 token, 4 workspace, 5 daily ttl, then triples
-- (yyyymmdd, counter, ledger's count for that day)
local P, cid, tok = ARGV[1], ARGV[2], ARGV[3]
local rbkey = P .. 'rb:' .. cid
if redis.call('GET', rbkey) ~= tok then return -1 end
local ckey, nkey = P .. 'c:' .. cid, P .. 'rbc:' .. tok
local ws = redis.call('HGET', ckey, 'ws') or ARGV[4]  -- the first recorded owner stays
redis.call('HSET', nkey, 'ws', ws)
-- The lifecycle status is not in the ledger's rows: it moves over with the swap.
local status = redis.call('HMGET', ckey, 'cs', 'csat', 'csq')
if status[1] then redis.call('HSET', nkey, 'cs', status[1], 'csat', status[2] or 0, 'csq', status[3] or 0) end
local function map(key)
  local flat, out = redis.call('HGETALL', key), {}
  for i = 1, #flat, 2 do out[flat[i]] = tonumber(flat[i + 1]) end
  return out
end
local old, new = map(ckey), map(nkey)
if ws ~= '' then
  for _, f in ipairs(COUNTERS) do
    local d = (new[f] or 0) - (old[f] or 0)
    if d ~= 0 then redis.call('HINCRBY', P .. 'w:' .. ws, f, d) end
  end
end
redis.call('RENAME', nkey, ckey)
redis.call('PERSIST', ckey)
local vs, nvs = P .. 'vs:' .. cid, P .. 'rbvs:' .. tok
for _, va in ipairs(redis.call('SMEMBERS', vs)) do redis.call('DEL', P .. 'v:' .. cid .. ':' .. va) end
local names = redis.call('SMEMBERS', nvs)
for _, va in ipairs(names) do
  local src, dst = P .. 'rbv:' .. tok .. ':' .. va, P .. 'v:' .. cid .. ':' .. va
  if redis.call('EXISTS', src) == 1 then
    redis.call('RENAME', src, dst)
    redis.call('PERSIST', dst)
  end
end
if #names > 0 then
  redis.call('RENAME', nvs, vs)
  redis.call('EXPIRE', vs, ARGV[5])
else
  redis.call('DEL', vs)
end
local dskey = P .. 'ds:' .. cid
for i = 6, #ARGV, 3 do
  local dkey = P .. 'd:' .. cid .. ':' .. ARGV[i]
  local n = tonumber(ARGV[i + 2])
  if n > (tonumber(redis.call('HGET', dkey, ARGV[i + 1])) or 0) then
    redis.call('HSET', dkey, ARGV[i + 1], n)
  end
  redis.call('EXPIRE', dkey, ARGV[5])
  redis.call('SADD', dskey, ARGV[i])
  redis.call('EXPIRE', dskey, ARGV[5])
end
redis.call('DEL', rbkey)
return 1
"""


ABANDON = "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 0"


class RebuildStore:
    """Runs the three steps against Redis (see the module docstring)."""

    def __init__(self, redis: aioredis.Redis, prefix: str, *, message_ttl: int,
                 daily_ttl: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.message_ttl = message_ttl
        self.daily_ttl = daily_ttl
        self._sha: dict[str, str] = {}

    async def _run(self, script: str, args: list[str]) -> int:
        for attempt in range(2):
            sha = self._sha.get(script)
            if sha is None:
                sha = self._sha[script] = await self.redis.script_load(script)
            try:
                return int(await self.redis.evalsha(sha, 0, *args))
            except NoScriptError:  # Redis restarted or flushed its scripts
                self._sha.pop(script, None)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def begin(self, campaign_id: str) -> str:
        """Starts a rebuild; returns its token (superseding any running one)."""
        token = uuid.uuid4().hex[:12]
        await self.redis.set(f"{self.prefix}rb:{campaign_id}", token, ex=TEMP_TTL - 60)
        return token

    async def merge(self, campaign_id: str, workspace: str, token: str,
                    rows: Iterable[LedgerMessage]) -> int:
        """Merges one chunk of ledger rows; returns how many messages were newly counted."""
        args = [self.prefix, campaign_id, token, workspace, str(self.message_ttl), str(TEMP_TTL)]
        for m in rows:
            args += [m.message_id, str(m.status), str(m.attempt), "1" if m.sent else "0",
                     str(m.views), str(m.clicks), str(m.replies), str(m.channel), m.variant]
        n = await self._run(MERGE, args)
        if n < 0:
            raise Superseded(campaign_id)
        return n

    async def finish(self, campaign_id: str, workspace: str, token: str,
                     daily: dict[tuple[str, str], int]) -> None:
        """Swaps the new counters in. daily: (yyyymmdd, counter) -> the ledger's count."""
        args = [self.prefix, campaign_id, token, workspace, str(self.daily_ttl)]
        for (day, field), n in sorted(daily.items()):
            args += [day, field, str(n)]
        if await self._run(FINISH, args) < 0:
            raise Superseded(campaign_id)

    async def abandon(self, campaign_id: str, token: str) -> None:
        """Ends a failed rebuild now (its temporary keys expire by themselves)."""
        # Only our own marker: a newer rebuild's stays.
        await self.redis.eval(ABANDON, 1, f"{self.prefix}rb:{campaign_id}", token)
