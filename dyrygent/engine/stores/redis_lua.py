"""The Lua scripts of :mod:`dyrygent.engine.stores.redis`: each store step runs atomically on
the Redis server and reads its clock (``TIME``), never a client's.

Keys of workflow ``wf`` (``p`` the prefix): ``p wf:m`` (meta hash), ``p wf:s`` (one byte per
node), ``p wf:g`` (graph), ``p wf:c`` (join counters), ``p wf:e`` (event log); and two
shared by all: ``p index`` (a sorted set of workflow ids by creation time) and
``p index-ttl`` (the longest TTL of a listed workflow: older index entries are gone).
"""

from __future__ import annotations

__all__ = ["CLAIM", "COMMIT", "COUNT", "CREATE", "LIST", "RELEASE", "REOPEN", "TOUCH"]

#: KEYS m s g c e index index-ttl; ARGV graph header states max_age ttl wf version,
#: then join counter / count pairs.
CREATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ttl = tonumber(ARGV[5])
redis.call('SET', KEYS[3], ARGV[1], 'EX', ttl)
redis.call('SET', KEYS[2], ARGV[3], 'EX', ttl)
redis.call('SET', KEYS[5], ARGV[7], 'EX', ttl)
redis.call('DEL', KEYS[1], KEYS[4])
redis.call('HSET', KEYS[1], 'gen', 0, 'holder', '', 'attempts', 0, 'dirty', '0',
           'status', 'running', 'header', ARGV[2], 'deadline', now + tonumber(ARGV[4]),
           'created', now)
redis.call('EXPIRE', KEYS[1], ttl)
for i = 8, #ARGV, 2 do redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1]) end
if #ARGV >= 8 then redis.call('EXPIRE', KEYS[4], ttl) end
-- every entry older than the longest TTL belongs to an expired workflow
local longest = math.max(tonumber(redis.call('GET', KEYS[7]) or '0'), ttl)
redis.call('SET', KEYS[7], longest, 'EX', longest)
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', '(' .. (now - longest))
redis.call('ZADD', KEYS[6], now, ARGV[6])
redis.call('EXPIRE', KEYS[6], longest)
"""

#: KEYS m s; ARGV gen (-1 for none) token wake lease. The rule of
#: :func:`dyrygent.engine.stores.base.claim_rule`.
CLAIM = """
local m = redis.call('HMGET', KEYS[1], 'gen', 'holder', 'status', 'deadline', 'held',
                     'attempts')
if not m[1] then return {'gone', 0} end
local gen = tonumber(m[1])
if m[3] ~= 'running' then return {'done', gen} end
local holder = m[2] or ''
local wake = ARGV[3] == '1'
local want = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ok = 'ok'
if now > tonumber(m[4]) then ok = 'expired' end
local live = holder ~= '' and now - tonumber(m[5] or 0) <= tonumber(ARGV[4])
if holder ~= '' and holder == ARGV[2] then
  if live then
    -- another delivery of this same message is ticking (a redelivery of an ETA message
    -- past the visibility timeout, or after a connection loss): not a crash, wait
    redis.call('HSET', KEYS[1], 'dirty', '1')
    return {'busy', gen, 0, '', tostring(now - tonumber(m[5] or now))}
  end
  local a = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  redis.call('HSET', KEYS[1], 'held', now)
  return {ok, gen, a, redis.call('GET', KEYS[2])}
end
if not wake then
  -- early: wait for the predecessor's commit, unless it died holding the workflow
  if want > gen and not (holder ~= '' and not live) then return {'early', gen} end
  if want < gen then return {'stale', gen} end
end
if holder ~= '' and not live then
  -- held past the lease: the holder died, and its message is not back (yet)
  local a = math.max((tonumber(m[6]) or 0) + 1, 2)
  redis.call('HSET', KEYS[1], 'holder', ARGV[2], 'attempts', a, 'held', now)
  return {ok, gen, a, redis.call('GET', KEYS[2])}
end
if holder ~= '' then
  redis.call('HSET', KEYS[1], 'dirty', '1')
  return {'busy', gen, 0, '', tostring(now - tonumber(m[5] or now))}
end
redis.call('HSET', KEYS[1], 'holder', ARGV[2], 'attempts', 1, 'dirty', '0', 'held', now)
return {ok, gen, 1, redis.call('GET', KEYS[2])}
"""

#: KEYS m; ARGV token.
EXTEND = """
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then return -1 end
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return 0 end
local n = redis.call('HLEN', KEYS[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3], 'order:' .. n, ARGV[2])
redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
local ttl = redis.call('TTL', KEYS[1])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('EXPIRE', KEYS[3], ttl)
end
return 1
"""

TOUCH = """
if redis.call('HGET', KEYS[1], 'holder') == ARGV[1] then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'held', tonumber(t[1]) + tonumber(t[2]) / 1000000)
  return 1
end
return 0
"""

#: KEYS m; ARGV token.
RELEASE = """
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'holder', '', 'attempts', 0)
return 1
"""

#: Shared by COMMIT and REOPEN: write the (offset, bytes) runs from ARGV[5] on into the state
#: string KEYS[2], collecting one packed event per changed byte, with the server's time.
_APPLY_RUNS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local events, n = {}, 0
for i = 5, #ARGV, 2 do
  local off, new = tonumber(ARGV[i]), ARGV[i + 1]
  local old = redis.call('GETRANGE', KEYS[2], off, off + #new - 1)
  for j = 1, #new do
    local o, v = string.byte(old, j) or 0, string.byte(new, j)
    if o ~= v then
      n = n + 1
      events[n] = struct.pack('>I4BB', off + j - 1, o, v)
    end
  end
  redis.call('SETRANGE', KEYS[2], off, new)
end
"""

#: KEYS m s e; ARGV token gen status version, then (offset, bytes) runs. The old bytes of
#: each run are read before it is written, and each changed byte appends one 6-byte event
#: (:mod:`dyrygent.engine.stores.events`) after the commit's time and event count.
COMMIT = (
    """
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then return -1 end
"""
    + _APPLY_RUNS
    + """if n > 0 then
  if redis.call('EXISTS', KEYS[3]) == 0 then
    -- stored by a release without events: start the log, expiring with the workflow
    redis.call('SET', KEYS[3], ARGV[4])
    local ttl = redis.call('PTTL', KEYS[1])
    if ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) end
  end
  redis.call('APPEND', KEYS[3], struct.pack('>dI4', now, n) .. table.concat(events))
end
local d = redis.call('HGET', KEYS[1], 'dirty')
redis.call('HSET', KEYS[1], 'gen', ARGV[2], 'holder', '', 'status', ARGV[3], 'dirty', '0')
if ARGV[3] ~= 'running' then redis.call('HSET', KEYS[1], 'ended', now) end
if d == '1' then return 1 end
return 0
"""
)

#: KEYS m s g c e; ARGV gen max_age ttl version, then (offset, bytes) runs. Reopens a
#: finished workflow at generation ``gen`` (nobody holds a finished one): writes the runs
#: with their events, sets it running at ``gen + 1`` with a new deadline, and gives every
#: record ``ttl`` seconds to live. Returns 1, or 0 if it is running, unknown or moved on.
REOPEN = (
    """
local m = redis.call('HMGET', KEYS[1], 'gen', 'status', 'holder')
if not m[1] or m[2] == 'running' or tonumber(m[1]) ~= tonumber(ARGV[1]) then return 0 end
if m[3] and m[3] ~= '' then return 0 end
"""
    + _APPLY_RUNS
    + """if redis.call('EXISTS', KEYS[5]) == 0 then redis.call('SET', KEYS[5], ARGV[4]) end
if n > 0 then
  redis.call('APPEND', KEYS[5], struct.pack('>dI4', now, n) .. table.concat(events))
end
redis.call('HSET', KEYS[1], 'gen', tonumber(ARGV[1]) + 1, 'holder', '', 'attempts', 0,
           'dirty', '0', 'status', 'running', 'deadline', now + tonumber(ARGV[2]))
redis.call('HDEL', KEYS[1], 'ended')
for k = 1, 5 do
  if redis.call('EXISTS', KEYS[k]) == 1 then redis.call('EXPIRE', KEYS[k], ARGV[3]) end
end
return 1
"""
)

#: KEYS c; ARGV the counters to decrement.
COUNT = """
local hit = 0
for i = 1, #ARGV do
  if redis.call('HINCRBY', KEYS[1], ARGV[i], -1) <= 0 then hit = 1 end
end
return hit
"""

#: KEYS index; ARGV prefix limit status ('' for any) max-score. Walks the index newest
#: first, drops the ids whose meta expired, and returns up to ``limit`` rows of
#: (id, status, gen, holder, attempts, created, ended, states). It reads keys it is not
#: given (the listed workflows'): fine on one Redis server, not on a Redis Cluster.
LIST = """
local out, found, offset = {}, 0, 0
local limit = tonumber(ARGV[2])
local batch = math.max(limit, 50)
while found < limit do
  local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], ARGV[4], '-inf', 'LIMIT', offset, batch)
  if #ids == 0 then break end
  local gone = 0
  for _, wf in ipairs(ids) do
    local m = redis.call('HMGET', ARGV[1] .. wf .. ':m', 'status', 'gen', 'holder',
                         'attempts', 'created', 'ended')
    if not m[1] then
      redis.call('ZREM', KEYS[1], wf)
      gone = gone + 1
    elseif ARGV[3] == '' or m[1] == ARGV[3] then
      found = found + 1
      out[found] = {wf, m[1], m[2], m[3], m[4], m[5] or '', m[6] or '',
                    redis.call('GET', ARGV[1] .. wf .. ':s') or ''}
      if found >= limit then break end
    end
  end
  offset = offset + #ids - gone
end
return out
"""
