"""The Lua script that applies one MessageEvent to the Redis counters (atomic, idempotent),
and the tables it is built from.

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
    "total", "sent", "processed", *STATUS_FIELDS.values(),
    "views", "viewed", "machine_opens", "clicks", "clicked", "replies",
)
# Events that bump a counter instead of moving the status; each event_id counts once.
COUNTER_OPS: dict[int, str] = {
    K.MESSAGE_EVENT_KIND_OPENED: "open",
    K.MESSAGE_EVENT_KIND_CLICKED: "click",
    K.MESSAGE_EVENT_KIND_REPLIED: "reply",
}
NOT_PROCESSED = {S.MESSAGE_STATUS_QUEUED, S.MESSAGE_STATUS_SENDING}


def lua_table(items: dict[int, object]) -> str:
    def lit(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        return '"' + str(v) + '"'

    return "{" + ", ".join(f"[{k}]={lit(v)}" for k, v in sorted(items.items())) + "}"


# Tables come from shared.states so the ranks have a single source of truth.
_LUA = f"""
local RANK = {lua_table(dict(states.RANK))}
local NAME = {lua_table(dict(STATUS_FIELDS))}
local SENT = {lua_table({s: True for s in states.SENT})}
local NOT_PROCESSED = {lua_table({s: True for s in NOT_PROCESSED})}
""" + r"""
-- KEYS[1] message hash, KEYS[2] event de-dup marker
-- ARGV: 1 prefix, 2 op (status|open|click|reply), 3 new status, 4 campaign, 5 workspace,
--       6 channel, 7 variant, 8 day (yyyymmdd), 9 machine open (0|1), 10 message ttl,
--       11 event ttl, 12 daily ttl, 13 attempt (0 = not said)
local P, op, new = ARGV[1], ARGV[2], tonumber(ARGV[3])
local mkey = KEYS[1]
local upd = {}
if op ~= 'status' then
  if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[11]) then return 'duplicate' end
end
local cur = redis.call('HMGET', mkey, 'st', 'c', 'w', 'va', 'ch', 'snt', 'prc', 'o', 'ck', 'at', 'rb')
local first = not cur[1]
local old = tonumber(cur[1]) or 0
-- Attempts: 0 in an event means "not said", i.e. the message's current attempt; a message
-- that never said its attempt is on its first. A higher attempt starts the message afresh,
-- a lower one is stale; within one attempt the state only moves up the ranks.
local stored_at = tonumber(cur[10]) or 0
local current = math.max(stored_at, 1)
local given = tonumber(ARGV[13]) or 0
local attempt = given > 0 and given or current
local restart = false
if op == 'status' and not first then
  if attempt < current then return 'stale' end
  restart = attempt > current
  if not restart and RANK[new] <= RANK[old] then
    if new == old then return 'duplicate' end
    return 'stale'
  end
end
if op == 'status' and given > stored_at then upd[#upd + 1] = 'at'; upd[#upd + 1] = given end

local function put(f, v) upd[#upd + 1] = f; upd[#upd + 1] = v end
local function pick(stored, given, field)
  stored = stored or ''
  if stored == '' and given ~= '' then put(field, given); return given end
  return stored
end
local camp = pick(cur[2], ARGV[4], 'c')
local ws = pick(cur[3], ARGV[5], 'w')
local va = pick(cur[4], ARGV[7], 'va')
if (cur[5] or '0') == '0' and ARGV[6] ~= '0' then put('ch', ARGV[6]) end

local targets = {}
local dkey = false
if camp ~= '' then
  targets[#targets + 1] = P .. 'c:' .. camp
  dkey = P .. 'd:' .. camp .. ':' .. ARGV[8]
  if va ~= '' then
    targets[#targets + 1] = P .. 'v:' .. camp .. ':' .. va
    redis.call('SADD', P .. 'vs:' .. camp, va)
    redis.call('EXPIRE', P .. 'vs:' .. camp, ARGV[12])
  end
  if ws ~= '' then redis.call('HSETNX', P .. 'c:' .. camp, 'ws', ws) end
  -- A rebuild of the campaign is running (RebuildCampaignStats) and has already merged this
  -- message into its new counters: the change goes there too, so the swap loses nothing.
  -- (A message no rebuild ever merged has no rb: no lookup on the common path.)
  local tok = cur[11] and redis.call('GET', P .. 'rb:' .. camp)
  if tok and cur[11] == tok then
    targets[#targets + 1] = P .. 'rbc:' .. tok
    if va ~= '' then
      targets[#targets + 1] = P .. 'rbv:' .. tok .. ':' .. va
      redis.call('SADD', P .. 'rbvs:' .. tok, va)
    end
  end
end
if ws ~= '' then targets[#targets + 1] = P .. 'w:' .. ws end
local touched_day = false
local function bump(field, n, flow)
  for i = 1, #targets do redis.call('HINCRBY', targets[i], field, n) end
  if flow and dkey then redis.call('HINCRBY', dkey, field, n); touched_day = true end
end

if first then
  bump('total', 1, true)
  if op ~= 'status' then put('st', 0) end
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
  if SENT[new] and not snt then put('snt', 1); bump('sent', 1, true) end
  if not NOT_PROCESSED[new] and not prc then put('prc', 1); bump('processed', 1, true) end
  put('st', new)
elseif op == 'open' then
  redis.call('HINCRBY', mkey, 'v', 1)
  bump('views', 1, true)
  if ARGV[9] == '1' then
    redis.call('HINCRBY', mkey, 'mo', 1)
    bump('machine_opens', 1, true)
  elseif not cur[8] then
    put('o', 1); bump('viewed', 1, true)
  end
elseif op == 'click' then
  redis.call('HINCRBY', mkey, 'k', 1)
  bump('clicks', 1, true)
  if not cur[9] then put('ck', 1); bump('clicked', 1, true) end
elseif op == 'reply' then
  redis.call('HINCRBY', mkey, 'r', 1)
  bump('replies', 1, true)
end
if #upd > 0 then redis.call('HSET', mkey, unpack(upd)) end
redis.call('EXPIRE', mkey, ARGV[10])
if touched_day then
  redis.call('EXPIRE', dkey, ARGV[12])
  local dskey = P .. 'ds:' .. camp
  redis.call('SADD', dskey, ARGV[8])
  redis.call('EXPIRE', dskey, ARGV[12])
end
return 'applied'
"""

SCRIPT = _LUA
