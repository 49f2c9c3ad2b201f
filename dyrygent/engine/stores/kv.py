"""The workflow store on other Celery key-value backends, e.g. the in-memory cache of the
demo and of the fast processor tests (see :mod:`dyrygent.engine.stores.base`).

Records are values of the backend (``get``/``set``), expiring as the backend's results do;
the event log is bytes in the format of :mod:`dyrygent.engine.stores.events`; the index is
one dict of id -> creation time, pruned of workflows whose meta is gone. The clock is this
process's: the store is atomic within one process only, so it has no other clock to agree
with.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from dyrygent.core.states import WorkflowStatus
from dyrygent.engine.stores.base import (
    DEFAULT_LEASE,
    KEEP_AFTER,
    PREFIX,
    Claim,
    ClaimStatus,
    Store,
    WorkflowRecord,
    claim_rule,
)
from dyrygent.engine.stores.events import (
    EVENTS_VERSION,
    NodeEvent,
    diff,
    pack_events,
    unpack_events,
)

__all__ = ["KVStore"]


class KVStore(Store):
    """The store on any Celery key-value backend, atomic within one process only.

    Used for the in-memory backend (``cache+memory://``). On a key-value backend shared
    between processes (memcached) the fence is best effort; use Redis in production.
    """

    _lock = threading.RLock()

    def __init__(self, backend: Any, prefix: str = PREFIX) -> None:
        self.backend = backend
        self.prefix = prefix

    def _get(self, key: str) -> Any:
        return self.backend.get(self.prefix + key)

    def _set(self, key: str, value: Any) -> None:
        self.backend.set(self.prefix + key, value)

    def _meta(self, wf: str) -> dict[str, Any] | None:
        meta = self._get(wf + ":m")
        return None if meta is None else dict(meta)

    def create(
        self,
        wf: str,
        graph: bytes,
        header: bytes,
        size: int,
        max_age: int,
        joins: Mapping[int, int] | None = None,
        states: bytes | None = None,
        keep: float = KEEP_AFTER,
    ) -> None:
        with self._lock:
            now = time.time()
            self._set(wf + ":c", dict(joins or {}))
            self._set(wf + ":g", graph)
            self._set(wf + ":s", bytes(size) if states is None else bytes(states))
            self._set(wf + ":e", EVENTS_VERSION)
            self._set(
                wf + ":m",
                {
                    "gen": 0,
                    "holder": "",
                    "attempts": 0,
                    "dirty": False,
                    "status": WorkflowStatus.RUNNING.value,
                    "header": header,
                    "deadline": now + max_age,
                    "expires": now + max_age + keep,
                    "created": now,
                    "ended": None,
                },
            )
            index = self._index()
            index[wf] = now
            self._set("index", index)

    def _index(self) -> dict[str, float]:
        """The index (id -> created), without the workflows whose meta expired or whose
        maximum age and KEEP_AFTER have passed."""
        now = time.time()
        index = dict(self._get("index") or {})
        for wf in list(index):
            meta = self._get(wf + ":m")
            if meta is None or meta.get("expires", now) < now:
                del index[wf]
        return index

    def load(self, wf: str) -> tuple[bytes | None, bytes | None]:
        meta = self._get(wf + ":m")
        return self._get(wf + ":g"), (meta or {}).get("header")

    def claim(
        self, wf: str, gen: int | None, token: str, wake: bool, lease: float = DEFAULT_LEASE
    ) -> Claim:
        with self._lock:
            meta = self._meta(wf)
            if meta is None:
                return Claim(ClaimStatus.GONE)
            now = time.time()
            status, writes = claim_rule(meta, gen, token, wake, lease, now)
            if writes:
                self._set(wf + ":m", {**meta, **writes})
            return Claim.from_rule(status, meta, writes, now, self._get(wf + ":s") or b"")

    def commit(
        self, wf: str, token: str, changes: Mapping[int, int], gen: int, status: WorkflowStatus
    ) -> bool | None:
        with self._lock:
            meta = self._meta(wf)
            if meta is None or meta["holder"] != token:
                return None
            now = time.time()
            self._write_states(wf, changes, now)
            dirty = bool(meta["dirty"])
            status = WorkflowStatus(status)
            meta.update(gen=gen, holder="", status=status.value, dirty=False)
            if status is not WorkflowStatus.RUNNING:
                meta["ended"] = now
            self._set(wf + ":m", meta)
            return dirty

    def reopen(
        self,
        wf: str,
        gen: int,
        changes: Mapping[int, int],
        max_age: int,
        keep: float = KEEP_AFTER,
    ) -> bool:
        with self._lock:
            meta = self._meta(wf)
            if (
                meta is None
                or meta["status"] == WorkflowStatus.RUNNING.value
                or int(meta["gen"]) != gen
                or meta.get("holder")
            ):
                return False
            now = time.time()
            self._write_states(wf, changes, now)
            meta.update(
                gen=gen + 1,
                holder="",
                attempts=0,
                dirty=False,
                status=WorkflowStatus.RUNNING.value,
                deadline=now + max_age,
                expires=now + max_age + keep,
                ended=None,
            )
            self._set(wf + ":m", meta)
            return True

    def _write_states(self, wf: str, changes: Mapping[int, int], now: float) -> None:
        """Apply ``changes`` to the stored states and log their events."""
        states = bytearray(self._get(wf + ":s"))
        events = diff(bytes(states), changes)
        for i, s in changes.items():
            if i >= len(states):
                states.extend(bytes(i + 1 - len(states)))
            states[i] = int(s)
        self._set(wf + ":s", bytes(states))
        if events:
            log = self._get(wf + ":e") or EVENTS_VERSION
            self._set(wf + ":e", bytes(log) + pack_events(now, events))

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
            meta = self._meta(wf) or {}
            if meta.get("holder") == token:
                meta.update(holder="", attempts=0)
                self._set(wf + ":m", meta)

    def touch(self, wf: str, token: str) -> bool:
        with self._lock:
            meta = self._meta(wf) or {}
            if meta.get("holder") != token:
                return False
            meta["held"] = time.time()
            self._set(wf + ":m", meta)
            return True

    def status(self, wf: str) -> WorkflowRecord:
        return self.snapshot(wf)[0]

    def history(self, wf: str) -> list[NodeEvent]:
        return self.snapshot(wf)[1]

    def snapshot(self, wf: str) -> tuple[WorkflowRecord, list[NodeEvent]]:
        with self._lock:
            meta = self._meta(wf)
            if meta is None:
                return WorkflowRecord(wf), []
            info = WorkflowRecord.from_stored(wf, meta, self._get(wf + ":s"))
            return info, unpack_events(self._get(wf + ":e"))

    def list_workflows(
        self, limit: int = 50, status: WorkflowStatus | None = None, before: float | None = None
    ) -> list[WorkflowRecord]:
        wanted = None if status is None else WorkflowStatus(status)
        with self._lock:
            index = self._index()
            self._set("index", index)
            newest = sorted(index.items(), key=lambda item: item[1], reverse=True)
            out: list[WorkflowRecord] = []
            for wf, created in newest:
                if len(out) >= limit:
                    break
                if before is not None and created >= before:
                    continue
                info = self.snapshot(wf)[0]
                if wanted is None or info.status is wanted:
                    out.append(info)
            return out

    def extend(
        self, wf: str, token: str, node: int, segment: bytes, counter: tuple[int, int]
    ) -> bool | None:
        with self._lock:
            meta = self._meta(wf)
            if meta is None or meta["holder"] != token:
                return None
            stored = list(self._get(wf + ":x") or [])
            if any(n == node for n, _ in stored):
                return False
            self._set(wf + ":x", [*stored, (node, bytes(segment))])
            joins = dict(self._get(wf + ":c") or {})
            joins[counter[0]] = counter[1]
            self._set(wf + ":c", joins)
            return True

    def segments(self, wf: str) -> list[bytes]:
        return [bytes(s) for _, s in self._get(wf + ":x") or []]

    def forget(self, wf: str) -> None:
        with self._lock:
            for kind in "mgscexwr":
                self.backend.delete(self.prefix + wf + ":" + kind)
            index = dict(self._get("index") or {})
            if index.pop(wf, None) is not None:
                self._set("index", index)

    records_starts = True

    def record_start(self, wf: str, node: str, worker: str) -> None:
        with self._lock:
            starts = dict(self._get(wf + ":w") or {})
            starts[node] = (time.time(), worker)
            self._set(wf + ":w", starts)

    def starts(self, wf: str, older_than: float) -> tuple[float, dict[str, tuple[float, str]]]:
        with self._lock:
            now = time.time()
            starts = self._get(wf + ":w") or {}
            return now, {n: (at, w) for n, (at, w) in starts.items() if at <= now - older_than}

    def drop_starts(self, wf: str, nodes: list[str]) -> None:
        with self._lock:
            starts = dict(self._get(wf + ":w") or {})
            for n in nodes:
                starts.pop(n, None)
            self._set(wf + ":w", starts)

    def relaunched(self, wf: str, node: str) -> int:
        with self._lock:
            starts = dict(self._get(wf + ":w") or {})
            starts.pop(node, None)
            self._set(wf + ":w", starts)
            counts = dict(self._get(wf + ":r") or {})
            counts[node] = counts.get(node, 0) + 1
            self._set(wf + ":r", counts)
            return int(counts[node])
