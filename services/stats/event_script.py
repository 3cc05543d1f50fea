"""The Lua script that applies a batch of MessageEvents to the Redis counters, in order, in
one call (atomic, idempotent per event), and the tables it is built from.

Redis key layout (P = HERALD_STATS_PREFIX, default "herald:stats:"):
  P m:<message_id>            hash  st (MessageStatus int), c (campaign), w (workspace),
                                    ch (Channel int), va (variant), v/k/r (views, clicks,
                                    replies), snt/prc (sent, processed: of the current
                                    attempt), o/ck (opened, clicked flags), at (attempt: a
                                    higher one restarts the message), mo (machine opens),
                                    rb (token of the last rebuild that merged it); TTL
                                    HERALD_STATS_MESSAGE_TTL, refreshed per event
  P e:<event_id>              string de-dup marker of an open/click/reply; TTL HERALD_STATS_EVENT_TTL
  P c:<campaign_id>           hash  counters (see COUNTERS) + ws (owning workspace, first wins:
                                    from message and campaign events, or CampaignService's answer)
                                    + cs/csat/csq (lifecycle status, services.stats.campaign_status)
  P w:<workspace_id>          hash  the same counters summed over the workspace
  P v:<campaign_id>:<variant> hash  the same counters per A/B variant
  P vs:<campaign_id>          set   the variants seen for the campaign
  P d:<campaign_id>:<yyyymmdd> hash flow counters of that UTC day (entries into a status,
                                    total, sent, processed, views, viewed, clicks, ...)
  P ds:<campaign_id>          set   the days that have a d: hash; d:/ds: TTL HERALD_STATS_DAILY_TTL
  P rb:<campaign_id>          string token of the RebuildCampaignStats running for the campaign;
  P rbc:<token>, P rbv:<token>:<variant>, P rbvs:<token>  its new counters until they are
                                    swapped in (services.stats.rebuild); all expire

Durability: all of it can be rebuilt from the ledger of record with RebuildCampaignStats
(per campaign): per-message state (status, attempt, sent/processed, views, clicks, replies,
variant, channel), the campaign and variant counters (views/clicks/replies as the ledger
counts them; unique openers/clickers = messages with views/clicks > 0), the workspace totals
(moved by the rebuilt campaign's difference, so a workspace is whole once each of its
campaigns was rebuilt), the owner record, the lifecycle status (kept across a rebuild; when
Redis lost it, learnt again from CampaignService on the next read), and of the per-day counters total (created day),
sent (sent day) and delivered (delivered day). Not rebuildable: the e: de-dup markers (an
open/click/reply the bus redelivers after a loss may count again in Redis),
machine opens (the ledger does not tell them apart: after a loss machine_opens restarts at 0
and the opens count as human, so viewed may rise), and per-day counters of other flows
(failed, processed, views, clicks, replies, ... by day: the ledger keeps no time per
transition or per hit); these stay as Redis has them. Local Redis runs with AOF everysec, so
a restart normally loses at most the last second (see RebuildCampaignStats for the rest).

Counters mean what CampaignService's Progress means (one definition, two readers):
  total      messages queued (each message once, whatever its attempts)
  processed  messages whose current attempt left QUEUED/SENDING, whatever the result
  sent       messages whose current attempt was handed to the carrier/MTA (SUBMITTED,
             DELIVERED or ASSUMED_DELIVERED at some point of that attempt; a carrier failure
             after submission still counts, a failure before submission does not)
  queued ... cancelled  messages *now* in that status: an applied transition decrements the
             old one and increments the new one.
Attempts (RetryMessages republishes QUEUED with attempt+1): state is monotonic within an
attempt; an event of a higher attempt starts the message afresh (its sent/processed flags are
cleared, so both counters describe the current attempt, as the ledger's sent_at does); an
event of a lower attempt is stale. Attempt 0 in an event means "not said": the current
attempt, and a message that never said one is on its first (the ledger's rule).
The c: hash's ws field is the campaign -> workspace record the service checks reads
against; it is rebuilt from message and campaign events (and cached CampaignService
answers). The script derives the campaign, workspace and variant keys from the message hash
(first values win), so it needs a standalone Redis, not Redis Cluster. While a rebuild of the
campaign runs, an event of a message the rebuild already merged (rb == the running token) is
applied to the rebuild's new counters as well, so the swap loses nothing.
"""

from __future__ import annotations

from herald.v1 import common_pb2 as c
from herald.v1 import events_pb2 as e

from shared import states

S = c.MessageStatus
K = e.MessageEventKind

STATUS_FIELDS: dict[int, str] = {
    s: states.status_name(s).lower() for s in S.values() if s != S.MESSAGE_STATUS_UNSPECIFIED
}
COUNTERS = (
    "total",
    "sent",
    "processed",
    *STATUS_FIELDS.values(),
    "views",
    "viewed",
    "machine_opens",
    "clicks",
    "clicked",
    "replies",
)
# Events that bump a counter instead of moving the status; each event_id counts once.
COUNTER_OPS: dict[int, str] = {
    K.MESSAGE_EVENT_KIND_OPENED: "open",
    K.MESSAGE_EVENT_KIND_CLICKED: "click",
    K.MESSAGE_EVENT_KIND_REPLIED: "reply",
}
NOT_PROCESSED = {S.MESSAGE_STATUS_QUEUED, S.MESSAGE_STATUS_SENDING}
# Values per event in the script's batch (services.stats.event_args.pack_events).
FIELDS_PER_EVENT = 11


def lua_table(items: dict[int, object]) -> str:
    def lit(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        return '"' + str(v) + '"'

    return "{" + ", ".join(f"[{k}]={lit(v)}" for k, v in sorted(items.items())) + "}"


# Tables come from shared.states so the ranks have a single source of truth. TEXT: a status as
# the text stored in the message hash, so the script never formats a number per event.
_LUA = (
    f"""
local RANK = {lua_table(dict(states.RANK))}
local NAME = {lua_table(dict(STATUS_FIELDS))}
local SENT = {lua_table({s: True for s in states.SENT})}
local NOT_PROCESSED = {lua_table({s: True for s in NOT_PROCESSED})}
local TEXT = {lua_table({s: str(s) for s in states.RANK})}
local F = {FIELDS_PER_EVENT}
"""
    + r"""
-- No KEYS: every key is derived from the prefix and the message hash (standalone Redis).
-- ARGV: 1 prefix, 2 message ttl, 3 event ttl, 4 daily ttl, 5 the batch as one JSON array,
-- F values per event (services.stats.event_args): message id, event id, op
-- (status|open|click|reply), new status (number), campaign, workspace, channel (text),
-- variant, day (yyyymmdd), machine open (0|1), attempt (text, '0' = not said).
-- Returns {one result letter per event (a applied, d duplicate, s stale, E error), the first
-- error or ''}.
--
-- Each event is applied in order, reading and writing its message hash and de-dup marker at
-- once, exactly as one call per event would. What no event of the batch reads back is
-- gathered and written once at the end: counter deltas summed per key and field (one HINCRBY
-- per counter instead of one per event, target and counter), the owner record (first one
-- wins), variant and day sets, and the TTLs. Nothing reads those between the events of one
-- call and the call is atomic, so the keys end exactly as after one call per event.
local P, MTTL, ETTL, DTTL = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local EV = cjson.decode(ARGV[5])

local delta, dorder = {}, {}        -- key -> {field -> n}; keys in first-touch order
local function sums(key)
  local t = delta[key]
  if not t then t = {}; delta[key] = t; dorder[#dorder + 1] = key end
  return t
end
local owners, owner_order = {}, {}  -- campaign -> first workspace seen
local vsets, dsets = {}, {}         -- campaign -> {variant -> true}, {day -> true}
local mexp, morder = {}, {}         -- message hashes whose TTL is refreshed
local tokens = {}                   -- campaign -> running rebuild's token, or false
local ckeys, wkeys, dkeys = {}, {}, {}  -- key strings built once per batch

-- State of the event being applied (reused: no tables or closures per event).
local upd, nupd = {}, 0             -- message hash fields to set
local targets, ntargets = {}, 0     -- counter sums of the keys the event counts in
local daysums = false               -- counter sums of its day, if it has a campaign
local touched_day = false
local function put(f, v) upd[nupd + 1] = f; upd[nupd + 2] = v; nupd = nupd + 2 end
local function pick(stored, given, field)
  stored = stored or ''
  if stored == '' and given ~= '' then put(field, given); return given end
  return stored
end
local function bump(field, n, flow)
  for t = 1, ntargets do
    local d = targets[t]
    d[field] = (d[field] or 0) + n
  end
  if flow and daysums then daysums[field] = (daysums[field] or 0) + n; touched_day = true end
end

local function apply(i)
  local op, new = EV[i + 2], EV[i + 3]
  local mkey = P .. 'm:' .. EV[i]
  nupd, ntargets, daysums, touched_day = 0, 0, false, false
  if op ~= 'status' then
    if not redis.call('SET', P .. 'e:' .. EV[i + 1], '1', 'NX', 'EX', ETTL) then return 'd' end
  end
  local cur = redis.call('HMGET', mkey, 'st', 'c', 'w', 'va', 'ch', 'snt', 'prc', 'o', 'ck', 'at', 'rb')
  local first = not cur[1]
  local old = tonumber(cur[1]) or 0
  -- Attempts: 0 in an event means "not said", i.e. the message's current attempt; a message
  -- that never said its attempt is on its first. A higher attempt starts the message afresh,
  -- a lower one is stale; within one attempt the state only moves up the ranks.
  local stored_at = tonumber(cur[10]) or 0
  local current = math.max(stored_at, 1)
  local given_text = EV[i + 10]
  local given = tonumber(given_text) or 0
  local attempt = given > 0 and given or current
  local restart = false
  if op == 'status' and not first then
    if attempt < current then return 's' end
    restart = attempt > current
    if not restart and RANK[new] <= RANK[old] then
      if new == old then return 'd' end
      return 's'
    end
  end
  if op == 'status' and given > stored_at then put('at', given_text) end

  local camp = pick(cur[2], EV[i + 4], 'c')
  local ws = pick(cur[3], EV[i + 5], 'w')
  local va = pick(cur[4], EV[i + 7], 'va')
  if (cur[5] or '0') == '0' and EV[i + 6] ~= '0' then put('ch', EV[i + 6]) end

  local day = EV[i + 8]
  if camp ~= '' then
    local ckey = ckeys[camp]
    if not ckey then ckey = P .. 'c:' .. camp; ckeys[camp] = ckey end
    ntargets = 1; targets[1] = sums(ckey)
    local dk = dkeys[camp]
    if not dk then dk = {}; dkeys[camp] = dk end
    local dkey = dk[day]
    if not dkey then dkey = P .. 'd:' .. camp .. ':' .. day; dk[day] = dkey end
    daysums = sums(dkey)
    if va ~= '' then
      ntargets = ntargets + 1; targets[ntargets] = sums(P .. 'v:' .. camp .. ':' .. va)
      local vs = vsets[camp]
      if not vs then vs = {}; vsets[camp] = vs end
      vs[va] = true
    end
    if ws ~= '' and not owners[camp] then owners[camp] = ws; owner_order[#owner_order + 1] = camp end
    -- A rebuild of the campaign is running (RebuildCampaignStats) and has already merged this
    -- message into its new counters: the change goes there too, so the swap loses nothing.
    -- (A message no rebuild ever merged has no rb: no lookup on the common path.)
    if cur[11] then
      local tok = tokens[camp]
      if tok == nil then tok = redis.call('GET', P .. 'rb:' .. camp); tokens[camp] = tok end
      if tok and cur[11] == tok then
        ntargets = ntargets + 1; targets[ntargets] = sums(P .. 'rbc:' .. tok)
        if va ~= '' then
          ntargets = ntargets + 1; targets[ntargets] = sums(P .. 'rbv:' .. tok .. ':' .. va)
          redis.call('SADD', P .. 'rbvs:' .. tok, va)
        end
      end
    end
  end
  if ws ~= '' then
    local wkey = wkeys[ws]
    if not wkey then wkey = P .. 'w:' .. ws; wkeys[ws] = wkey end
    ntargets = ntargets + 1; targets[ntargets] = sums(wkey)
  end

  if first then
    bump('total', 1, true)
    if op ~= 'status' then put('st', '0') end
  end
  if op == 'status' then
    local snt, prc = cur[6], cur[7]
    if restart then
      -- sent and processed describe the current attempt: the new one has done neither yet.
      if snt then bump('sent', -1, false); snt = false end
      if prc then bump('processed', -1, false); prc = false end
      redis.call('HDEL', mkey, 'snt', 'prc')
    end
    if old ~= 0 then bump(NAME[old], -1, false) end
    bump(NAME[new], 1, true)
    if SENT[new] and not snt then put('snt', '1'); bump('sent', 1, true) end
    if not NOT_PROCESSED[new] and not prc then put('prc', '1'); bump('processed', 1, true) end
    put('st', TEXT[new])
  elseif op == 'open' then
    redis.call('HINCRBY', mkey, 'v', '1')
    bump('views', 1, true)
    if EV[i + 9] == 1 then
      redis.call('HINCRBY', mkey, 'mo', '1')
      bump('machine_opens', 1, true)
    elseif not cur[8] then
      put('o', '1'); bump('viewed', 1, true)
    end
  elseif op == 'click' then
    redis.call('HINCRBY', mkey, 'k', '1')
    bump('clicks', 1, true)
    if not cur[9] then put('ck', '1'); bump('clicked', 1, true) end
  elseif op == 'reply' then
    redis.call('HINCRBY', mkey, 'r', '1')
    bump('replies', 1, true)
  end
  if nupd > 0 then redis.call('HSET', mkey, unpack(upd, 1, nupd)) end
  if not mexp[mkey] then mexp[mkey] = true; morder[#morder + 1] = mkey end
  if touched_day then
    local ds = dsets[camp]
    if not ds then ds = {}; dsets[camp] = ds end
    ds[day] = true
  end
  return 'a'
end

local out, err = {}, ''
for i = 1, #EV, F do
  -- An event that fails (a key of the wrong type, ...) keeps what it wrote, as a call of its
  -- own would, and does not stop the others; the caller raises and the batch is redelivered.
  local ok, res = pcall(apply, i)
  if ok then
    out[#out + 1] = res
  else
    out[#out + 1] = 'E'
    if err == '' then err = type(res) == 'table' and (res.err or '?') or tostring(res) end
  end
end

for _, key in ipairs(dorder) do
  -- A field is written even when its sum is 0, as the calls it stands for would create it.
  for field, n in pairs(delta[key]) do redis.call('HINCRBY', key, field, n) end
end
for _, camp in ipairs(owner_order) do redis.call('HSETNX', ckeys[camp], 'ws', owners[camp]) end
for camp, vs in pairs(vsets) do
  local key = P .. 'vs:' .. camp
  for va in pairs(vs) do redis.call('SADD', key, va) end
  redis.call('EXPIRE', key, DTTL)
end
for _, mkey in ipairs(morder) do redis.call('EXPIRE', mkey, MTTL) end
for camp, ds in pairs(dsets) do
  local dskey = P .. 'ds:' .. camp
  for day in pairs(ds) do
    redis.call('EXPIRE', dkeys[camp][day], DTTL)
    redis.call('SADD', dskey, day)
  end
  redis.call('EXPIRE', dskey, DTTL)
end
return {table.concat(out), err}
"""
)

SCRIPT = _LUA
