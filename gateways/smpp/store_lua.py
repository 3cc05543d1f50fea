"""The SMPP gateway's Redis scripts (see store.py for the keys and marker values)."""

# One EVALSHA per batch instead of a pipeline of one command per key: redis-py spends
# ~10 us packing and parsing each pipelined command, which was the largest share of the
# gateway's CPU per message. Keys are passed as KEYS; both scripts only touch those keys.
# Claim: KEYS = job markers, then the epoch key last; ARGV: ttl, held value, epoch stamp.
# Returns per job '' (claimed now) or the marker found, then the epoch.
CLAIM = """
local out = {}
local n = #KEYS - 1
for i = 1, n do
  local key = KEYS[i]
  if redis.call('SET', key, ARGV[2], 'NX', 'EX', ARGV[1]) then
    out[i] = ''
  else
    local cur = redis.call('GET', key) or ''
    if string.sub(cur, 1, 9) == 'released:' then
      redis.call('SET', key, ARGV[2], 'EX', ARGV[1])
      out[i] = 'released:'
    else
      out[i] = cur
    end
  end
end
redis.call('SET', KEYS[n + 1], ARGV[3], 'NX')
out[n + 1] = redis.call('GET', KEYS[n + 1]) or ARGV[3]
return out
"""
# Before a socket write: KEYS = markers of the jobs in it; ARGV: ttl, our held prefix,
# our written prefix, the written value. A marker that is ours (held or already written)
# or gone (Redis lost it while we hold the job's delivery) becomes written: 1; anything
# else (another process took it over, or an outcome): 0, and that job is not written.
WRITTEN = """
local out = {}
local hp, wp = ARGV[2], ARGV[3]
for i, key in ipairs(KEYS) do
  local cur = redis.call('GET', key)
  if (not cur) or string.sub(cur, 1, #hp) == hp or string.sub(cur, 1, #wp) == wp then
    redis.call('SET', key, ARGV[4], 'EX', ARGV[1])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""
# Compare-and-set of whole values: KEYS[i] from ARGV[i + 2] to ARGV[2] (ttl ARGV[1]);
# '' where it was swapped, else what is there ('-' if nothing).
SWAP = """
local out = {}
for i, key in ipairs(KEYS) do
  local cur = redis.call('GET', key)
  if cur == ARGV[i + 2] then
    redis.call('SET', key, ARGV[2], 'EX', ARGV[1])
    out[i] = ''
  else
    out[i] = cur or '-'
  end
end
return out
"""
# Release: our held/written marker (ARGV[2] / ARGV[3] prefixes) becomes ARGV[4].
RELEASE = """
local cur = redis.call('GET', KEYS[1])
if cur and (string.sub(cur, 1, #ARGV[2]) == ARGV[2] or string.sub(cur, 1, #ARGV[3]) == ARGV[3]) then
  redis.call('SET', KEYS[1], ARGV[4], 'EX', ARGV[1])
  return 1
end
return 0
"""
# KEYS[i] with ARGV[2i-1], ARGV[2i]: op and value (see Writes); then the TTLs ops refer to.
WRITE = """
local n = #KEYS
local ttls = {ARGV[2 * n + 1], ARGV[2 * n + 2], ARGV[2 * n + 3]}
for i, key in ipairs(KEYS) do
  local op, value = ARGV[2 * i - 1], ARGV[2 * i]
  local c = string.byte(op, 1)
  if c == 83 then      -- 'S<ttl index>': SET key value EX ttl
    redis.call('SET', key, value, 'EX', ttls[tonumber(string.sub(op, 2))])
  elseif c == 78 then  -- 'N<ttl index>': SET key value EX ttl NX
    redis.call('SET', key, value, 'EX', ttls[tonumber(string.sub(op, 2))], 'NX')
  elseif c == 90 then  -- 'Z<score>': ZADD key score value
    redis.call('ZADD', key, string.sub(op, 2), value)
  elseif c == 72 then  -- 'H<field>': HSET key field value
    redis.call('HSET', key, string.sub(op, 2), value)
  end
end
return n
"""
