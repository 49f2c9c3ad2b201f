"""The Lua scripts behind the worker records of :mod:`dyrygent.engine.orphans` on Redis.

Keys of workflow ``wf`` (``p`` the prefix, as in :mod:`~dyrygent.engine.stores.redis_lua`):
``p wf:w`` (node id -> ``started|worker``: which worker started the node, when, by the
server's clock) and ``p wf:r`` (node id -> relaunches so far). Both expire with the meta.
"""

from __future__ import annotations

__all__ = ["RECORD", "RELAUNCHED", "STARTS"]

#: KEYS w m; ARGV node worker. One HSET per node start, stamped with the server's clock;
#: the record expires with the workflow's meta (a finished workflow's record is not kept).
RECORD = """
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], ARGV[1], t[1] .. '.' .. string.format('%06d', t[2]) .. '|' .. ARGV[2])
local ttl = redis.call('PTTL', KEYS[2])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
"""

#: KEYS w; ARGV older-than (seconds). Returns the server's time, then node id / record pairs
#: of the nodes started at least that long ago.
STARTS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local limit = now - tonumber(ARGV[1])
local out = {t[1] .. '.' .. string.format('%06d', t[2])}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local v = all[i + 1]
  local started = tonumber(string.match(v, '^[^|]*'))
  if started and started <= limit then
    out[#out + 1] = all[i]
    out[#out + 1] = v
  end
end
return out
"""

#: KEYS w r m; ARGV node. Forgets the node's start record and counts one relaunch; returns
#: the count.
RELAUNCHED = """
redis.call('HDEL', KEYS[1], ARGV[1])
local n = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
local ttl = redis.call('PTTL', KEYS[3])
if ttl > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
return n
"""
