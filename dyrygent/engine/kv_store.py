"""The workflow store on other Celery key-value backends (see :mod:`dyrygent.engine.store`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from dyrygent.engine.store import DEFAULT_LEASE, PREFIX, Claim, Store, claim_rule

__all__ = ["KVStore"]


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

    def create(
        self,
        wf: str,
        graph: bytes,
        header: bytes,
        size: int,
        max_age: int,
        joins: Mapping[int, int] | None = None,
    ) -> None:
        with self._lock:
            self._set(wf + ":c", dict(joins or {}))
            self._set(wf + ":g", graph)
            self._set(wf + ":s", bytes(size))
            self._set(
                wf + ":m",
                {
                    "gen": 0,
                    "holder": "",
                    "attempts": 0,
                    "dirty": False,
                    "status": "running",
                    "header": header,
                    "deadline": time.time() + max_age,
                },
            )

    def load(self, wf: str) -> tuple[bytes | None, bytes | None]:
        meta = self._get(wf + ":m")
        return self._get(wf + ":g"), (meta or {}).get("header")

    def claim(
        self, wf: str, gen: int | None, token: str, wake: bool, lease: float = DEFAULT_LEASE
    ) -> Claim:
        with self._lock:
            meta = self._get(wf + ":m")
            if meta is None:
                return Claim("gone")
            meta = dict(meta)
            now = time.time()
            age = now - float(meta.get("held") or now)
            status, writes = claim_rule(meta, gen, token, wake, lease, now)
            if writes:
                meta.update(writes)
                self._set(wf + ":m", meta)
            if status == "busy":
                return Claim(status, meta["gen"], age=age)
            if status not in ("ok", "expired"):
                return Claim(status, meta["gen"])
            return Claim(status, meta["gen"], meta["attempts"], bytes(self._get(wf + ":s")))

    def commit(
        self, wf: str, token: str, changes: Mapping[int, int], gen: int, status: str
    ) -> bool | None:
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

    def touch(self, wf: str, token: str) -> bool:
        with self._lock:
            meta = dict(self._get(wf + ":m") or {})
            if meta.get("holder") != token:
                return False
            meta["held"] = time.time()
            self._set(wf + ":m", meta)
            return True

    def status(self, wf: str) -> dict[str, Any]:
        meta = dict(self._get(wf + ":m") or {})
        meta["states"] = bytes(self._get(wf + ":s") or b"")
        return meta
