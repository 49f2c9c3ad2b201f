"""The workflow store on a Redis result backend: each step one Lua script, atomic on the
server and timed by its clock (see :mod:`dyrygent.engine.store` for the protocol; the claim
script is :func:`~dyrygent.engine.store.claim_rule`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dyrygent.engine.store import DEFAULT_LEASE, KEEP_AFTER, PREFIX, Claim, Store, _runs

__all__ = ["RedisStore"]

_CLAIM = """
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

_TOUCH = """
if redis.call('HGET', KEYS[1], 'holder') == ARGV[1] then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'held', tonumber(t[1]) + tonumber(t[2]) / 1000000)
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'holder', '', 'attempts', 0)
return 1
"""

_COMMIT = """
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then return -1 end
for i = 4, #ARGV, 2 do redis.call('SETRANGE', KEYS[2], tonumber(ARGV[i]), ARGV[i + 1]) end
local d = redis.call('HGET', KEYS[1], 'dirty')
redis.call('HSET', KEYS[1], 'gen', ARGV[2], 'holder', '', 'status', ARGV[3], 'dirty', '0')
if d == '1' then return 1 end
return 0
"""


_COUNT = """
local hit = 0
for i = 1, #ARGV do
  if redis.call('HINCRBY', KEYS[1], ARGV[i], -1) <= 0 then hit = 1 end
end
return hit
"""


class RedisStore(Store):
    """The store on a Redis result backend (``backend.client``), fenced by Lua scripts."""

    def __init__(self, client: Any, prefix: str = PREFIX) -> None:
        self.client = client
        self.prefix = prefix
        self._claim = client.register_script(_CLAIM)
        self._commit = client.register_script(_COMMIT)
        self._release = client.register_script(_RELEASE)
        self._touch = client.register_script(_TOUCH)
        self._count = client.register_script(_COUNT)

    def _keys(self, wf: str) -> tuple[str, str, str]:
        p = self.prefix + wf
        return p + ":m", p + ":s", p + ":g"

    def create(
        self,
        wf: str,
        graph: bytes,
        header: bytes,
        size: int,
        max_age: int,
        joins: Mapping[int, int] | None = None,
    ) -> None:
        m, s, g = self._keys(wf)
        c = self.prefix + wf + ":c"
        now = int(self.client.time()[0])  # the Redis server's clock, the one claim reads
        ttl = max_age + KEEP_AFTER
        pipe = self.client.pipeline()
        pipe.set(g, graph, ex=ttl)
        pipe.set(s, bytes(size), ex=ttl)
        pipe.delete(m)
        pipe.hset(
            m,
            mapping={
                "gen": 0,
                "holder": "",
                "attempts": 0,
                "dirty": "0",
                "status": "running",
                "header": header,
                "deadline": now + max_age,
            },
        )
        pipe.expire(m, ttl)
        pipe.delete(c)
        if joins:
            pipe.hset(c, mapping={str(k): v for k, v in joins.items()})
            pipe.expire(c, ttl)
        pipe.execute()

    def count_down(self, wf: str, counters: list[int]) -> bool:
        return bool(self._count(keys=[self.prefix + wf + ":c"], args=counters))

    def load(self, wf: str) -> tuple[bytes | None, bytes | None]:
        m, _, g = self._keys(wf)
        pipe = self.client.pipeline()
        pipe.get(g)
        pipe.hget(m, "header")
        graph, header = pipe.execute()
        return graph, header

    def claim(
        self, wf: str, gen: int | None, token: str, wake: bool, lease: float = DEFAULT_LEASE
    ) -> Claim:
        m, s, _ = self._keys(wf)
        r = self._claim(
            keys=[m, s], args=[-1 if gen is None else gen, token, "1" if wake else "0", lease]
        )
        status = r[0].decode() if isinstance(r[0], bytes) else r[0]
        if status == "busy":
            return Claim(status, int(r[1]), age=float(r[4]))
        if status not in ("ok", "expired"):
            return Claim(status, int(r[1]))
        return Claim(status, int(r[1]), int(r[2]), r[3] or b"")

    def commit(
        self, wf: str, token: str, changes: Mapping[int, int], gen: int, status: str
    ) -> bool | None:
        m, s, _ = self._keys(wf)
        args: list[Any] = [token, gen, status]
        for offset, data in _runs(changes):
            args += [offset, data]
        r = self._commit(keys=[m, s], args=args)
        return None if r == -1 else bool(r)

    def release(self, wf: str, token: str) -> None:
        self._release(keys=[self._keys(wf)[0]], args=[token])

    def touch(self, wf: str, token: str) -> bool:
        return bool(self._touch(keys=[self._keys(wf)[0]], args=[token]))

    def status(self, wf: str) -> dict[str, Any]:
        m, s, _ = self._keys(wf)
        meta: dict[str, Any] = {k.decode(): v for k, v in self.client.hgetall(m).items()}
        for k in ("holder", "status"):
            if k in meta:
                meta[k] = meta[k].decode()
        for k in ("gen", "attempts"):
            if k in meta:
                meta[k] = int(meta[k])
        meta["states"] = self.client.get(s) or b""
        return meta
