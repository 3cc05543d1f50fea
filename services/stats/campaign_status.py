"""A campaign's lifecycle status as the stats service learns it (campaign events on the bus,
or CampaignService's answer when it had none), kept in the campaign's counters hash
P c:<campaign_id> next to its owner:
  cs    CampaignStatus (int)
  csat  when the campaign entered it (the transition's time, microseconds since the epoch)
  csq   EVENTS stream sequence of the newest record of it (what the message consumer must
        have applied before the campaign's figures can be called final)

Which record wins (one Lua script, atomic; events arrive at least once and in publish
order, which may differ from the order of the transitions when two processes moved the
campaign):
  1. nothing known yet: the record is taken;
  2. CANCELLED, FAILED and EXPIRED have no way out in the lifecycle: once known they stay,
     and a record of one of them always wins (whatever its time: nothing can follow it);
  3. DONE is left only by its own exit, SENDING whose previous status is DONE (RetryMessages),
     stamped no earlier than the DONE;
  4. otherwise the later transition time wins (a tie: the later arrival). CampaignService
     stamps each transition when it makes it, under the campaign's row lock, so the times of
     one campaign follow the order of its transitions (on one clock; replicas whose clocks
     disagree by more than the gap between two transitions can reorder them).
A record of the status already known only moves csat/csq forward (a redelivery changes
nothing).
"""

from __future__ import annotations

from herald.v1 import campaigns_pb2 as cpb

ST = cpb.CampaignStatus
TERMINAL = frozenset({ST.CAMPAIGN_STATUS_DONE, ST.CAMPAIGN_STATUS_CANCELLED,
                      ST.CAMPAIGN_STATUS_FAILED, ST.CAMPAIGN_STATUS_EXPIRED})
NO_EXIT = TERMINAL - {ST.CAMPAIGN_STATUS_DONE}

SCRIPT = f"""
local NO_EXIT = {{{", ".join(f"[{s}]=true" for s in sorted(NO_EXIT))}}}
local DONE, SENDING = {ST.CAMPAIGN_STATUS_DONE}, {ST.CAMPAIGN_STATUS_SENDING}
""" + r"""
-- KEYS[1] campaign hash; ARGV: 1 workspace, 2 status, 3 previous status, 4 time (us), 5 seq
local key = KEYS[1]
if ARGV[1] ~= '' then redis.call('HSETNX', key, 'ws', ARGV[1]) end
local new, prev = tonumber(ARGV[2]), tonumber(ARGV[3])
local at, seq = tonumber(ARGV[4]), tonumber(ARGV[5])
if new == 0 then return 'ignored' end
local cur = redis.call('HMGET', key, 'cs', 'csat', 'csq')
local old, oat, oseq = tonumber(cur[1]) or 0, tonumber(cur[2]) or 0, tonumber(cur[3]) or 0
if new == old then
  if at <= oat and seq <= oseq then return 'duplicate' end
  redis.call('HSET', key, 'csat', math.max(at, oat), 'csq', math.max(seq, oseq))
  return 'duplicate'
end
local take
if old == 0 then take = true
elseif NO_EXIT[old] then take = false
elseif NO_EXIT[new] then take = true
elseif old == DONE then take = new == SENDING and prev == DONE and at >= oat
else take = at >= oat end
if not take then return 'stale' end
redis.call('HSET', key, 'cs', new, 'csat', at, 'csq', seq)
return 'applied'
"""


def status_value(name: str) -> int:
    """CampaignStatus of an event's status name ("DONE" or "CAMPAIGN_STATUS_DONE"); 0 when
    the name is empty or unknown (a newer producer)."""
    name = name.strip().upper()
    if not name:
        return 0
    if not name.startswith("CAMPAIGN_STATUS_"):
        name = f"CAMPAIGN_STATUS_{name}"
    return ST.Value(name) if name in ST.keys() else 0


def is_terminal(status: int) -> bool:
    return status in TERMINAL
