"""Lua scripts that check who owns a pending entry and act on it in one atomic step.

``XACK`` and ``XCLAIM`` act whoever holds an entry; these scripts first look the owner up
with ``XPENDING``, so a node that lost its lease (it was paused, or Redis restarted) never
stores a second result, steals an entry back or hands back work that is no longer its.

Scripts that acknowledge take an ``ackdel`` flag (``'1'`` on Redis 8.2+): the entry is
then acknowledged with ``XACKDEL ... ACKED``, deleted as soon as every group is done
with it; ``XACK`` otherwise, and also when ``XACKDEL`` fails (the server was replaced by
an older one since its features were detected).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

# ack(id) for the scripts that acknowledge: KEYS[1] jobs, ARGV[1] group, ARGV[4] ackdel.
ACK = """
local function ack(id)
  if ARGV[4] == '1' and pcall(redis.call, 'XACKDEL', KEYS[1], ARGV[1], 'ACKED', 'IDS', 1, id) then
    return
  end
  redis.call('XACK', KEYS[1], ARGV[1], id)
end
"""

# Acknowledge entries whatever their owner (dead-lettered ones). KEYS[1] jobs;
# ARGV: group, unused, unused, ackdel, ids.
ACK_ALL = """
for i = 5, #ARGV do ack(ARGV[i]) end
return #ARGV - 4
"""

# Store each result in its reply stream and ack its job, only while this node owns it.
# A result Redis refuses to store (out of memory, a reply key of the wrong type) leaves its
# job pending, unacknowledged: the node keeps it and tries again; nothing is acked unanswered.
# KEYS[1] jobs; ARGV: group, me, reply_ttl_ms, ackdel, then per result:
# entry id, reply key, job id, codec, outcomes, signature ('' when unsigned).
# Returns {lost, {entry id, error, ...}}.
FINISH = """
local jobs, group, me, ttl = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
local lost, failed = 0, {}
for i = 5, #ARGV, 6 do
  local id, reply = ARGV[i], ARGV[i + 1]
  local ok, p = pcall(redis.call, 'XPENDING', jobs, group, id, id, 1)
  if ok and p[1] and p[1][2] == me then
    local added, err
    if ARGV[i + 5] == '' then
      added, err = pcall(redis.call, 'XADD', reply, '*', 'v', '1', 'j', ARGV[i + 2],
        'c', ARGV[i + 3], 'o', ARGV[i + 4])
    else
      added, err = pcall(redis.call, 'XADD', reply, '*', 'v', '1', 'j', ARGV[i + 2],
        'c', ARGV[i + 3], 'o', ARGV[i + 4], 's', ARGV[i + 5])
    end
    if added then
      if redis.call('PTTL', reply) < 0 then redis.call('PEXPIRE', reply, ttl) end
      ack(id)
    else
      table.insert(failed, id)
      table.insert(failed, tostring(err and err.err or err))
    end
  else
    lost = lost + 1
  end
end
return {lost, failed}
"""

# Reset the idle time of entries this node still owns (JUSTID: delivery counts unchanged).
# KEYS[1] jobs; ARGV: group, me, ids. Returns the ids no longer owned.
RENEW = """
local jobs, group, me = KEYS[1], ARGV[1], ARGV[2]
local lost = {}
for i = 3, #ARGV do
  local ok, p = pcall(redis.call, 'XPENDING', jobs, group, ARGV[i], ARGV[i], 1)
  if ok and p[1] and p[1][2] == me then
    redis.call('XCLAIM', jobs, group, me, 0, ARGV[i], 'JUSTID')
  else
    table.insert(lost, ARGV[i])
  end
end
return lost
"""

# Take over entries still held by a consumer judged dead; a racing node takes none twice.
# KEYS[1] jobs; ARGV: group, dead consumer, me, ids.
# Returns {id, fields or false, delivery count} per entry taken.
CLAIM_FROM = """
local jobs, group, dead, me = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local taken = {}
for i = 4, #ARGV do
  local p = redis.call('XPENDING', jobs, group, ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == dead then
    local e = redis.call('XCLAIM', jobs, group, me, 0, ARGV[i])
    local fields = false
    if e[1] and e[1][2] then fields = e[1][2] end
    table.insert(taken, {ARGV[i], fields, p[1][4] + 1})
  end
end
return taken
"""

# Claim entries idle longer than the lease (their holder neither beats nor renews).
# KEYS[1] jobs; ARGV: group, me, min idle ms, count. Returns {id, fields or false, count}.
AUTOCLAIM = """
local jobs, group, me = KEYS[1], ARGV[1], ARGV[2]
local r = redis.call('XAUTOCLAIM', jobs, group, me, ARGV[3], '0-0', 'COUNT', ARGV[4])
local taken = {}
for _, e in ipairs(r[2]) do
  local p = redis.call('XPENDING', jobs, group, e[1], e[1], 1)
  local count = 1
  if p[1] then count = p[1][4] end
  table.insert(taken, {e[1], e[2] or false, count})
end
for _, id in ipairs(r[3] or {}) do
  table.insert(taken, {id, false, 1})
end
return taken
"""

# Put entries back on the stream as new ones (so any node reads them at once) and ack the
# old ones, for entries this node still owns. The copy's field 'n' adds the old entry's
# deliveries to those of its own earlier lives: a hand-back counts as a delivery.
# KEYS[1] jobs; ARGV: group, me, unused, ackdel, ids.
HAND_BACK = """
local jobs, group, me = KEYS[1], ARGV[1], ARGV[2]
local handed = 0
for i = 5, #ARGV do
  local p = redis.call('XPENDING', jobs, group, ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == me then
    local e = redis.call('XRANGE', jobs, ARGV[i], ARGV[i])
    if e[1] then
      local fields, earlier, job = {}, 0, nil
      for k = 1, #e[1][2], 2 do
        if e[1][2][k] == 'n' then
          earlier = tonumber(e[1][2][k + 1]) or 0
        else
          if e[1][2][k] == 'j' then job = e[1][2][k + 1] end
          table.insert(fields, e[1][2][k])
          table.insert(fields, e[1][2][k + 1])
        end
      end
      table.insert(fields, 'n')
      table.insert(fields, tostring(earlier + p[1][4]))
      local new_id = redis.call('XADD', jobs, '*', unpack(fields))
      if KEYS[2] and job then  -- the job lives on in the new entry: not a replay
        redis.call('HSET', KEYS[2], job, new_id)
        redis.call('HDEL', KEYS[3], job)
      end
      handed = handed + 1
    end
    ack(ARGV[i])
  end
end
return handed
"""

# Drop every entry all groups have acknowledged (Redis 8.2), but only while a group
# exists: with none, XTRIM ... ACKED counts every entry as acknowledged and drops all.
# Only entries every group has been delivered are looked at (MINID just past the lowest
# last-delivered id): a backlog nobody has read yet costs the scan nothing.
# KEYS[1] jobs. Returns the entries dropped, or -1 when the stream or its groups are gone.
TRIM_ACKED = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then return -1 end
local low_ms, low_seq, low_id
for _, group in ipairs(groups) do
  for k = 1, #group, 2 do
    if group[k] == 'last-delivered-id' then
      local ms, seq = string.match(group[k + 1], '^(%d+)-(%d+)$')
      ms, seq = tonumber(ms), tonumber(seq)
      if low_ms == nil or ms < low_ms or (ms == low_ms and seq < low_seq) then
        low_ms, low_seq, low_id = ms, seq, group[k + 1]
      end
    end
  end
end
local below = low_id
if low_seq < 2^53 then  -- exact in a Lua number: step just past the last delivered entry
  below = string.match(low_id, '^(%d+)-') .. '-' .. string.format('%.0f', low_seq + 1)
end
return redis.call('XTRIM', KEYS[1], 'MINID', '=', below, 'ACKED')
"""


# Replay protection: remember each signed job id with the entry that carries it, for the
# replay window, in two hashes by time bucket (this window's and the last one's, so memory
# stays bounded). The same entry seen again (a redelivery, a claim) is fine; another entry
# with a job id already seen is a replay. KEYS[1] this bucket, KEYS[2] the last one;
# ARGV: bucket lifetime ms, then job id, entry id pairs. Returns the job ids replayed.
SEEN = """
local replays = {}
for i = 2, #ARGV, 2 do
  local known = redis.call('HGET', KEYS[1], ARGV[i]) or redis.call('HGET', KEYS[2], ARGV[i])
  if not known then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  elseif known ~= ARGV[i + 1] then
    table.insert(replays, ARGV[i])
  end
end
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return replays
"""


class Scripts:
    """The scripts registered on one client (EVALSHA, loaded again after a restart)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.ack_all = client.register_script(ACK + ACK_ALL)
        self.finish = client.register_script(ACK + FINISH)
        self.renew = client.register_script(RENEW)
        self.claim_from = client.register_script(CLAIM_FROM)
        self.autoclaim = client.register_script(AUTOCLAIM)
        self.hand_back = client.register_script(ACK + HAND_BACK)
        self.trim_acked = client.register_script(TRIM_ACKED)
        self.seen = client.register_script(SEEN)


def taken_entries(reply: Any) -> list[tuple[bytes, dict[bytes, bytes] | None, int]]:
    """Decode the ``{id, fields, count}`` triples CLAIM_FROM and AUTOCLAIM return."""
    entries = []
    for entry_id, flat, count in reply or []:
        fields = None
        if flat:
            fields = {flat[k]: flat[k + 1] for k in range(0, len(flat), 2)}
        entries.append((entry_id, fields, int(count)))
    return entries
