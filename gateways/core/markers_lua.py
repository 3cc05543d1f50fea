"""The send markers' Redis scripts (see markers.py). Each is atomic over its keys; the claim
also reads keys it is not given (the claimant's liveness key, shared.epoch's key): Herald's
Redis is one instance, not a cluster."""

# KEYS: the jobs' marker keys, then the ref keys of the jobs whose ref (ARGV[6 + i]) is not
# empty, in the same order. Per key: take it when absent, deferred, or held by a claimant
# that is gone. Returns
# {epoch or false, {taken, previous, claimant alive} or 1 (taken, none there)...}: the epoch is read in the same
# atomic step, so a data set lost between two epoch refreshes is seen with the markers.
# Text markers of a channel's earlier gateway ('<state>:<value>', see markers.py) are read
# like the JSON ones: held/written:<process>:<time>, released (deferred), anything else stands.
CLAIM_MANY = """
local function text_marker(v)
  local s, rest = string.match(v, '^(%a+):(.*)$')
  if s == 'held' or s == 'written' then
    local o, t = string.match(rest, '^(.*):([%d%.]+)$')
    return {s = s, o = o, t = t}
  elseif s == 'released' then
    return {s = 'deferred'}
  end
  return {s = s or 'corrupt'}
end
local now = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
local out = {redis.call('GET', ARGV[5])}
local n = #ARGV - 6
local r = n
for i = 1, n do
  local k = KEYS[i]
  local refkey = false
  if ARGV[6 + i] ~= '' then r = r + 1; refkey = KEYS[r] end
  -- the common case first: no marker there, taken in one command (SET NX)
  local v = false
  local take = true
  local alive = 0
  if not redis.call('SET', k, ARGV[1], 'NX', 'EX', ARGV[2]) then
    v = redis.call('GET', k)
    local ok, st
    if string.byte(v, 1) == 123 then ok, st = pcall(cjson.decode, v) else ok, st = true, text_marker(v) end
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
    if v then redis.call('SET', k, ARGV[1], 'EX', ARGV[2]) end
    if refkey then redis.call('SET', refkey, ARGV[6 + i], 'EX', ARGV[2]) end
    if v then out[i + 1] = {1, v} else out[i + 1] = 1 end
  else
    out[i + 1] = {0, v, alive}
  end
end
return out
"""
# Relay acceptances recorded (SET, the first ARGV[2] keys), then held -> written for the rest,
# only where the marker is still exactly its claim's "held" value: one call per gate flush.
# The jobs of a flush share a few claims: each claim's (held, written) values come once
# (ARGV[3 + ARGV[2]] of them), then one claim number per job.
GATE_MANY = """
local n = tonumber(ARGV[2])
for i = 1, n do redis.call('SET', KEYS[i], ARGV[i + 2], 'EX', ARGV[1]) end
local pairs_at = n + 2
local per_job = pairs_at + 1 + 2 * tonumber(ARGV[n + 3])
local out = {}
for i = n + 1, #KEYS do
  local at = pairs_at + 2 * tonumber(ARGV[per_job + i - n])
  if redis.call('GET', KEYS[i]) == ARGV[at] then
    redis.call('SET', KEYS[i], ARGV[at + 1], 'EX', ARGV[1])
    out[i - n] = 1
  else
    out[i - n] = 0
  end
end
return out
"""
# Outcomes (SET, the first ARGV[2] keys), released claims (DEL where still this claim's
# "held" value, the next ARGV[3]) and reopened ones (DEL where this claim's "held" value or
# its "written" one: a value that starts as written markers do and ends with the claim's
# identity, ARGV held/identity pairs) together.
RECORD_MANY = """
local n = tonumber(ARGV[2])
local r = n + tonumber(ARGV[3])
for i = 1, n do redis.call('SET', KEYS[i], ARGV[i + 3], 'EX', ARGV[1]) end
for i = n + 1, r do
  if redis.call('GET', KEYS[i]) == ARGV[i + 3] then redis.call('DEL', KEYS[i]) end
end
local wp = '{"s":"written","t":'
local at = r + 4
for i = r + 1, #KEYS do
  local cur = redis.call('GET', KEYS[i])
  local ident = ARGV[at + 1]
  if cur and (cur == ARGV[at] or (string.sub(cur, 1, #wp) == wp
      and string.sub(cur, -#ident) == ident)) then
    redis.call('DEL', KEYS[i])
  end
  at = at + 2
end
return #KEYS
"""
