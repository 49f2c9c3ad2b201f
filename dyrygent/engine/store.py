"""Where a workflow lives between ticks: the Celery result backend.

Per workflow, three records:

* ``graph``: the encoded graph, written once by the client;
* ``state``: one byte per node (a NodeState); a tick rewrites only the bytes that changed;
* ``meta``: ``gen`` (the generation fence), ``holder`` (the processor message now ticking),
  ``attempts`` (claims by that holder), ``dirty`` (a node finished while it ticked),
  ``status``, and ``header`` (workflow-level options).

:meth:`Store.claim` and :meth:`Store.commit` implement the fence: a processor message for
generation ``g`` may tick only while the stored generation is ``g`` and nobody holds it;
a hold not renewed for the lease is taken over by the next claim, as a re-tick (``attempts``
counts those); before that, the holder is alive and any newcomer, even a second delivery of
the holder's own message, is a duplicate.
On Redis both are single Lua scripts; :class:`KVStore` serves other key-value backends
(e.g. the in-memory cache of the demo) under a process-local lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dyrygent.errors import ConfigurationError

__all__ = ["Claim", "KVStore", "RedisStore", "Store", "store_for"]

PREFIX = "dyrygent-wf-"
#: How long a workflow's records outlive its maximum age, for inspection.
KEEP_AFTER = 24 * 3600
#: Seconds after which a hold whose holder stopped renewing it may be taken over: by the
#: driver, or by another delivery of the holder's own message (a holder ticking longer
#: renews it every third of this).
DEFAULT_LEASE = 10


@dataclass(frozen=True)
class Claim:
    """The answer to a claim.

    ``status``: ``ok`` (tick now), ``expired`` (held like ``ok``, but past its maximum age:
    end it), ``stale`` (a driver of an older generation: exit), ``busy`` (another processor
    is ticking: a wake-up exits, as that tick sees its node; a driver comes back shortly),
    ``early`` (the driver's predecessor has not committed yet: come back shortly), ``done``
    (the workflow is over), ``gone`` (no such workflow).

    There are two kinds of ticks: the *driver*'s (``gen`` given), exactly one valid driver
    message per workflow, which re-enqueues itself and advances the generation; and
    *wake-ups* (``gen`` None), run when a node ends, which tick without changing it.
    """

    status: str
    gen: int = 0
    attempts: int = 0
    states: bytes = b""


def _runs(changes: Mapping[int, int]) -> list[tuple[int, bytes]]:
    """Group changed bytes into (offset, bytes) runs of consecutive indices."""
    runs: list[tuple[int, bytes]] = []
    start = prev = -2
    buf = bytearray()
    for i in sorted(changes):
        if i != prev + 1:
            if buf:
                runs.append((start, bytes(buf)))
            start, buf = i, bytearray()
        buf.append(int(changes[i]))
        prev = i
    if buf:
        runs.append((start, bytes(buf)))
    return runs


class Store:
    """The interface; see the module docstring for the protocol."""

    def create(self, wf: str, graph: bytes, header: bytes, size: int, max_age: int,
               joins: Mapping[int, int] | None = None) -> None:
        """Store a new workflow; it expires ``max_age`` seconds later by the store's own
        clock (one clock: never compare two hosts' clocks, RELIABILITY.md item 8).
        ``joins`` maps join counters (a node index, or -1 for the workflow's end) to the
        number of completions they wait for: see :meth:`count_down`."""
        raise NotImplementedError

    def count_down(self, wf: str, counters: list[int]) -> bool:
        """A node ended: decrement its join counters; true if one reached zero (a tick may
        find something ready). Only a hint: the driver's backup tick covers any miss."""
        raise NotImplementedError

    def load(self, wf: str) -> tuple[bytes | None, bytes | None]:
        """(graph, header) as stored, None where missing."""
        raise NotImplementedError

    def claim(self, wf: str, gen: int | None, token: str, wake: bool,
              lease: float = DEFAULT_LEASE) -> Claim:
        """Claim ``wf`` for the message ``token``. A hold not renewed for ``lease`` seconds
        may be taken over, as a re-tick, by anyone: the holder died, and its message, if
        any, is not back (a Redis broker brings it back only after its visibility timeout).
        Within the lease the holder is alive: anyone else, even a second delivery of the
        holder's own message, is told ``busy``."""
        raise NotImplementedError

    def release(self, wf: str, token: str) -> None:
        """Give up ``token``'s hold without committing (its tick failed and will not be
        retried under that id)."""
        raise NotImplementedError

    def touch(self, wf: str, token: str) -> None:
        """Renew ``token``'s hold (a long tick says it is alive, so no driver takes over)."""
        raise NotImplementedError

    def commit(self, wf: str, token: str, changes: Mapping[int, int], gen: int,
               status: str) -> bool | None:
        """Write changes, set gen and status, release the hold. Returns whether a node
        finished while we held it (dirty), or None if ``token`` no longer holds it."""
        raise NotImplementedError

    def status(self, wf: str) -> dict[str, Any]:
        """meta fields and the state bytes, for inspection and tests."""
        raise NotImplementedError


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
    return {'busy', gen}
  end
  local a = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  redis.call('HSET', KEYS[1], 'held', now)
  return {ok, gen, a, redis.call('GET', KEYS[2])}
end
if not wake then
  if want > gen then return {'early', gen} end
  if want < gen then return {'stale', gen} end
end
if holder ~= '' and not live then
  -- held past the lease: the holder died, and its message is not back (yet)
  local a = (tonumber(m[6]) or 0) + 1
  redis.call('HSET', KEYS[1], 'holder', ARGV[2], 'attempts', a, 'held', now)
  return {ok, gen, math.max(a, 2), redis.call('GET', KEYS[2])}
end
if holder ~= '' then
  redis.call('HSET', KEYS[1], 'dirty', '1')
  return {'busy', gen}
end
redis.call('HSET', KEYS[1], 'holder', ARGV[2], 'attempts', 1, 'dirty', '0', 'held', now)
return {ok, gen, 1, redis.call('GET', KEYS[2])}
"""

_TOUCH = """
if redis.call('HGET', KEYS[1], 'holder') == ARGV[1] then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'held', tonumber(t[1]) + tonumber(t[2]) / 1000000)
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

    def create(self, wf: str, graph: bytes, header: bytes, size: int, max_age: int,
               joins: Mapping[int, int] | None = None) -> None:
        m, s, g = self._keys(wf)
        c = self.prefix + wf + ":c"
        now = int(self.client.time()[0])  # the Redis server's clock, the one claim reads
        ttl = max_age + KEEP_AFTER
        pipe = self.client.pipeline()
        pipe.set(g, graph, ex=ttl)
        pipe.set(s, bytes(size), ex=ttl)
        pipe.delete(m)
        pipe.hset(m, mapping={"gen": 0, "holder": "", "attempts": 0, "dirty": "0",
                              "status": "running", "header": header,
                              "deadline": now + max_age})
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

    def claim(self, wf: str, gen: int | None, token: str, wake: bool,
              lease: float = DEFAULT_LEASE) -> Claim:
        m, s, _ = self._keys(wf)
        r = self._claim(keys=[m, s], args=[-1 if gen is None else gen, token,
                                           "1" if wake else "0", lease])
        status = r[0].decode() if isinstance(r[0], bytes) else r[0]
        if status not in ("ok", "expired"):
            return Claim(status, int(r[1]))
        return Claim(status, int(r[1]), int(r[2]), r[3] or b"")

    def commit(self, wf: str, token: str, changes: Mapping[int, int], gen: int,
               status: str) -> bool | None:
        m, s, _ = self._keys(wf)
        args: list[Any] = [token, gen, status]
        for offset, data in _runs(changes):
            args += [offset, data]
        r = self._commit(keys=[m, s], args=args)
        return None if r == -1 else bool(r)

    def release(self, wf: str, token: str) -> None:
        self._release(keys=[self._keys(wf)[0]], args=[token])

    def touch(self, wf: str, token: str) -> None:
        self._touch(keys=[self._keys(wf)[0]], args=[token])

    def status(self, wf: str) -> dict[str, Any]:
        m, s, _ = self._keys(wf)
        meta = {k.decode(): v for k, v in self.client.hgetall(m).items()}
        meta["states"] = self.client.get(s) or b""
        return meta


class KVStore(Store):
    """The store on any Celery key-value backend, atomic within one process only.

    Used for the in-memory demo backend (``cache+memory://``). On a key-value backend shared
    between processes (memcached) the fence is best effort; use Redis in production.
    """

    _lock = threading.Lock()

    def __init__(self, backend: Any, prefix: str = PREFIX) -> None:
        self.backend = backend
        self.prefix = prefix

    def _get(self, key: str) -> Any:
        return self.backend.get(self.prefix + key)

    def _set(self, key: str, value: Any) -> None:
        self.backend.set(self.prefix + key, value)

    def create(self, wf: str, graph: bytes, header: bytes, size: int, max_age: int,
               joins: Mapping[int, int] | None = None) -> None:
        with self._lock:
            self._set(wf + ":c", dict(joins or {}))
            self._set(wf + ":g", graph)
            self._set(wf + ":s", bytes(size))
            self._set(wf + ":m", {"gen": 0, "holder": "", "attempts": 0, "dirty": False,
                                  "status": "running", "header": header,
                                  "deadline": time.time() + max_age})

    def load(self, wf: str) -> tuple[bytes | None, bytes | None]:
        meta = self._get(wf + ":m")
        return self._get(wf + ":g"), (meta or {}).get("header")

    def claim(self, wf: str, gen: int | None, token: str, wake: bool,
              lease: float = DEFAULT_LEASE) -> Claim:
        with self._lock:
            meta = self._get(wf + ":m")
            if meta is None:
                return Claim("gone")
            meta = dict(meta)
            if meta["status"] != "running":
                return Claim("done", meta["gen"])
            holder = meta["holder"]
            now = time.time()
            live = bool(holder) and now - meta.get("held", 0) <= lease
            if holder and holder == token:
                if live:  # another delivery of this same message is ticking
                    meta["dirty"] = True
                    self._set(wf + ":m", meta)
                    return Claim("busy", meta["gen"])
                meta["attempts"] += 1
            else:
                if not wake and gen is not None and gen > meta["gen"]:
                    return Claim("early", meta["gen"])
                if not wake and (gen is None or gen < meta["gen"]):
                    return Claim("stale", meta["gen"])
                if holder and live:
                    meta["dirty"] = True
                    self._set(wf + ":m", meta)
                    return Claim("busy", meta["gen"])
                if holder:  # taking over a hold past its lease: a re-tick
                    meta.update(holder=token, attempts=max(meta["attempts"] + 1, 2))
                else:
                    meta.update(holder=token, attempts=1, dirty=False)
            meta["held"] = now
            self._set(wf + ":m", meta)
            status = "expired" if time.time() > meta["deadline"] else "ok"
            return Claim(status, meta["gen"], meta["attempts"], bytes(self._get(wf + ":s")))

    def commit(self, wf: str, token: str, changes: Mapping[int, int], gen: int,
               status: str) -> bool | None:
        with self._lock:
            meta = dict(self._get(wf + ":m"))
            if meta["holder"] != token:
                return None
            states = bytearray(self._get(wf + ":s"))
            for i, s in changes.items():
                states[i] = s
            self._set(wf + ":s", bytes(states))
            dirty = bool(meta["dirty"])
            meta.update(gen=gen, holder="", status=status, dirty=False)
            self._set(wf + ":m", meta)
            return dirty

    def count_down(self, wf: str, counters: list[int]) -> bool:
        with self._lock:
            joins = dict(self._get(wf + ":c") or {})
            hit = False
            for k in counters:
                joins[k] = joins.get(k, 0) - 1
                hit = hit or joins[k] <= 0
            self._set(wf + ":c", joins)
            return hit

    def release(self, wf: str, token: str) -> None:
        with self._lock:
            meta = dict(self._get(wf + ":m") or {})
            if meta.get("holder") == token:
                meta.update(holder="", attempts=0)
                self._set(wf + ":m", meta)

    def touch(self, wf: str, token: str) -> None:
        with self._lock:
            meta = dict(self._get(wf + ":m") or {})
            if meta.get("holder") == token:
                meta["held"] = time.time()
                self._set(wf + ":m", meta)

    def status(self, wf: str) -> dict[str, Any]:
        meta = dict(self._get(wf + ":m") or {})
        meta["states"] = bytes(self._get(wf + ":s") or b"")
        return meta


def store_for(app: Any) -> Store:
    """The store for ``app``'s result backend.

    Raises ConfigurationError when the backend cannot hold workflow state.
    """
    from celery.backends.base import BaseKeyValueStoreBackend, DisabledBackend
    from celery.backends.redis import RedisBackend

    backend = app.backend
    if isinstance(backend, RedisBackend):
        return RedisStore(backend.client)
    if isinstance(backend, BaseKeyValueStoreBackend):
        return KVStore(backend)
    if isinstance(backend, DisabledBackend):
        raise ConfigurationError(
            "dyrygent needs a result backend to see node outcomes, and this Celery app has "
            "none: set result_backend (e.g. 'redis://localhost:6379/1')")
    raise ConfigurationError(
        f"dyrygent cannot keep workflow state in a {type(backend).__name__}: use a Redis "
        f"result backend (result_backend='redis://...') or another key-value backend")
