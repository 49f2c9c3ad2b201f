"""Where a workflow lives between ticks: next to the node results, in the result backend.

Per workflow, three records:

* ``graph``: the encoded graph, written once by the client;
* ``state``: one byte per node (a NodeState); a tick rewrites only the bytes that changed;
* ``meta``: ``gen`` (the generation fence), ``holder`` (the processor message now ticking),
  ``held`` (when the hold was last renewed, by the store's clock), ``attempts`` (claims by
  that holder), ``dirty`` (a node finished while it ticked), ``status``, and ``header``
  (workflow-level options);

plus join counters (:meth:`Store.count_down`).

:meth:`Store.claim` and :meth:`Store.commit` implement the fence: a processor message for
generation ``g`` may tick only while the stored generation is ``g`` and nobody holds it;
a hold not renewed for the lease is taken over by the next claim, as a re-tick (``attempts``
counts those); before that, the holder is alive and any newcomer, even a second delivery of
the holder's own message, is a duplicate. :func:`claim_rule` states the rule once.

Implementations: :class:`~dyrygent.engine.redis_store.RedisStore` (Lua scripts, atomic on
the server), :class:`~dyrygent.engine.sql_store.SQLStore` (the database result backend:
compare-and-set on a version column), and :class:`~dyrygent.engine.kv_store.KVStore` (other
key-value backends, e.g. the in-memory cache of the demo, under a process-local lock).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dyrygent.errors import ConfigurationError

__all__ = ["Claim", "Store", "claim_rule", "store_for"]

PREFIX = "dyrygent-wf-"
#: How long a workflow's records outlive its maximum age, for inspection.
KEEP_AFTER = 24 * 3600
#: Seconds after which a hold whose holder stopped renewing it is taken over by the next
#: claim (a holder ticking longer renews it every fifth of this).
DEFAULT_LEASE = 10


@dataclass(frozen=True)
class Claim:
    """The answer to a claim.

    ``status``: ``ok`` (tick now), ``expired`` (held like ``ok``, but past its maximum age:
    end it), ``stale`` (a driver of an older generation: exit), ``busy`` (another processor
    is ticking: a wake-up exits, as that tick sees its node; a driver comes back shortly;
    ``age`` says how long ago the hold was last renewed), ``early`` (the driver's
    predecessor has not committed yet: come back shortly), ``done`` (the workflow is over),
    ``gone`` (no such workflow).

    There are two kinds of ticks: the *driver*'s (``gen`` given), exactly one valid driver
    message per workflow, which re-enqueues itself and advances the generation; and
    *wake-ups* (``gen`` None), run when a node ends, which tick without changing it.
    """

    status: str
    gen: int = 0
    attempts: int = 0
    states: bytes = b""
    age: float = 0.0


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

    def create(
        self,
        wf: str,
        graph: bytes,
        header: bytes,
        size: int,
        max_age: int,
        joins: Mapping[int, int] | None = None,
    ) -> None:
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

    def claim(
        self, wf: str, gen: int | None, token: str, wake: bool, lease: float = DEFAULT_LEASE
    ) -> Claim:
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

    def touch(self, wf: str, token: str) -> bool:
        """Renew ``token``'s hold (a long tick says it is alive, so nobody takes over);
        false if ``token`` no longer holds it (it was taken over: stop)."""
        raise NotImplementedError

    def commit(
        self, wf: str, token: str, changes: Mapping[int, int], gen: int, status: str
    ) -> bool | None:
        """Write changes, set gen and status, release the hold. Returns whether a node
        finished while we held it (dirty), or None if ``token`` no longer holds it."""
        raise NotImplementedError

    def status(self, wf: str) -> dict[str, Any]:
        """The meta fields (``gen`` and ``attempts`` ints, ``holder`` and ``status`` str) and
        the state bytes (``states``), for inspection and tests."""
        raise NotImplementedError


def _dirty(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Mark the workflow dirty (a node ended while someone held it), writing only if needed."""
    return {} if meta.get("dirty") in (True, 1, "1", b"1") else {"dirty": True}


def claim_rule(
    meta: Mapping[str, Any], gen: int | None, token: str, wake: bool, lease: float, now: float
) -> tuple[str, dict[str, Any]]:
    """The fence's claim rule: (status, meta fields to write) for a claim of ``meta``.

    ``now`` is the store's own clock, the one ``held`` and ``deadline`` were written with.
    The Lua script of :mod:`dyrygent.engine.redis_store` is this rule, on the server.
    """
    if meta["status"] != "running":
        return "done", {}
    holder = meta["holder"]
    live = bool(holder) and now - float(meta.get("held") or 0) <= lease
    ok = "expired" if now > float(meta["deadline"]) else "ok"
    if holder and holder == token:
        if live:  # another delivery of this same message is ticking: not a crash, wait
            return "busy", _dirty(meta)
        return ok, {"attempts": int(meta["attempts"]) + 1, "held": now}
    if not wake and gen is not None:
        # early: wait for the predecessor's commit, unless it died holding the workflow
        if gen > int(meta["gen"]) and not (holder and not live):
            return "early", {}
        if gen < int(meta["gen"]):
            return "stale", {}
    if holder and not live:  # held past the lease: the holder died
        return ok, {"holder": token, "attempts": max(int(meta["attempts"]) + 1, 2), "held": now}
    if holder:
        return "busy", _dirty(meta)
    return ok, {"holder": token, "attempts": 1, "dirty": False, "held": now}


def store_for(app: Any) -> Store:
    """The store for ``app``'s result backend.

    Raises ConfigurationError when the backend cannot hold workflow state.
    """
    from celery.backends.base import BaseKeyValueStoreBackend, DisabledBackend
    from celery.backends.redis import RedisBackend

    backend = app.backend
    if isinstance(backend, RedisBackend):
        from dyrygent.engine.redis_store import RedisStore

        return RedisStore(backend.client)
    if type(backend).__name__ == "DatabaseBackend":  # its module needs SQLAlchemy
        from dyrygent.engine.sql_store import SQLStore

        return SQLStore.for_backend(backend)
    if isinstance(backend, BaseKeyValueStoreBackend):
        from dyrygent.engine.kv_store import KVStore

        return KVStore(backend)
    if isinstance(backend, DisabledBackend):
        raise ConfigurationError(
            "dyrygent needs a result backend to see node outcomes, and this Celery app has "
            "none: set result_backend (e.g. 'redis://localhost:6379/1')"
        )
    raise ConfigurationError(
        f"dyrygent cannot keep workflow state in a {type(backend).__name__}: use a Redis "
        f"result backend (result_backend='redis://...'), the database backend "
        f"('db+postgresql://...') or another key-value backend"
    )
