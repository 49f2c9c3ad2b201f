"""The workflow store on a Redis result backend: each step one Lua script
(:mod:`dyrygent.engine.stores.redis_lua`), atomic on the server and timed by its clock;
reads are one pipelined round trip. See :mod:`dyrygent.engine.stores.base` for the protocol.

The event log is one string per workflow, appended by the commit script (6 bytes per event,
12 per commit); the index is one sorted set scored by creation time, pruned by score when a
workflow is created and of expired ids when listed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dyrygent.core.states import WorkflowStatus
from dyrygent.engine.failures import transient
from dyrygent.engine.stores import orphan_lua, redis_lua
from dyrygent.engine.stores.base import (
    DEFAULT_LEASE,
    KEEP_AFTER,
    PREFIX,
    Claim,
    ClaimStatus,
    Store,
    WorkflowRecord,
    change_runs,
)
from dyrygent.engine.stores.events import EVENTS_VERSION, NodeEvent, unpack_events

__all__ = ["RedisStore"]

_FIELDS = ("status", "gen", "holder", "attempts", "created", "ended")


class RedisStore(Store):
    """The store on a Redis result backend (``backend.client``), fenced by Lua scripts."""

    def __init__(self, client: Any, prefix: str = PREFIX) -> None:
        self.client = client
        self.prefix = prefix
        self.index_key = prefix + "index"
        self._create = client.register_script(redis_lua.CREATE)
        self._claim = client.register_script(redis_lua.CLAIM)
        self._commit = client.register_script(redis_lua.COMMIT)
        self._release = client.register_script(redis_lua.RELEASE)
        self._touch = client.register_script(redis_lua.TOUCH)
        self._extend = client.register_script(redis_lua.EXTEND)
        self._count = client.register_script(redis_lua.COUNT)
        self._list = client.register_script(redis_lua.LIST)
        self._reopen = client.register_script(redis_lua.REOPEN)
        self._record = client.register_script(orphan_lua.RECORD)
        self._starts = client.register_script(orphan_lua.STARTS)
        self._relaunched = client.register_script(orphan_lua.RELAUNCHED)

    records_starts = True

    def _key(self, wf: str, kind: str) -> str:
        """The key of ``wf``'s record ``kind`` (m, s, g, c, e, x: segments; w and r:
        orphan_lua)."""
        return f"{self.prefix}{wf}:{kind}"

    @transient
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
        keys = [self._key(wf, k) for k in "msgce"] + [self.index_key, self.index_key + "-ttl"]
        initial = bytes(size) if states is None else bytes(states)
        args: list[Any] = [graph, header, initial, max_age, max_age + int(keep), wf]
        args.append(EVENTS_VERSION)
        for k, v in (joins or {}).items():
            args += [k, v]
        self._create(keys=keys, args=args)

    @transient
    def count_down(self, wf: str, counters: list[int]) -> bool:
        return bool(self._count(keys=[self._key(wf, "c")], args=counters))

    @transient
    def load(self, wf: str) -> tuple[bytes | None, bytes | None]:
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self._key(wf, "g"))
        pipe.hget(self._key(wf, "m"), "header")
        graph, header = pipe.execute()
        return graph, header

    @transient
    def claim(
        self, wf: str, gen: int | None, token: str, wake: bool, lease: float = DEFAULT_LEASE
    ) -> Claim:
        r = self._claim(
            keys=[self._key(wf, "m"), self._key(wf, "s")],
            args=[-1 if gen is None else gen, token, "1" if wake else "0", lease],
        )
        status = ClaimStatus(r[0].decode() if isinstance(r[0], bytes) else r[0])
        if status is ClaimStatus.BUSY:
            return Claim(status, int(r[1]), age=float(r[4]))
        if status not in (ClaimStatus.OK, ClaimStatus.EXPIRED):
            return Claim(status, int(r[1]))
        return Claim(status, int(r[1]), int(r[2]), r[3] or b"")

    @transient
    def commit(
        self, wf: str, token: str, changes: Mapping[int, int], gen: int, status: WorkflowStatus
    ) -> bool | None:
        args: list[Any] = [token, gen, WorkflowStatus(status).value, EVENTS_VERSION]
        for offset, data in change_runs(changes):
            args += [offset, data]
        r = self._commit(keys=[self._key(wf, k) for k in "mse"], args=args)
        return None if r == -1 else bool(r)

    @transient
    def reopen(
        self,
        wf: str,
        gen: int,
        changes: Mapping[int, int],
        max_age: int,
        keep: float = KEEP_AFTER,
    ) -> bool:
        args: list[Any] = [gen, max_age, max_age + int(keep), EVENTS_VERSION]
        for offset, data in change_runs(changes):
            args += [offset, data]
        return bool(self._reopen(keys=[self._key(wf, k) for k in "msgce"], args=args))

    @transient
    def release(self, wf: str, token: str) -> None:
        self._release(keys=[self._key(wf, "m")], args=[token])

    @transient
    def touch(self, wf: str, token: str) -> bool:
        return bool(self._touch(keys=[self._key(wf, "m")], args=[token]))

    def _read(self, wf: str, events: bool) -> list[Any]:
        """[meta fields, states(, event log)] of ``wf`` in one MULTI/EXEC round trip."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hmget(self._key(wf, "m"), _FIELDS)
        pipe.get(self._key(wf, "s"))
        if events:
            pipe.get(self._key(wf, "e"))
        return list(pipe.execute())

    @transient
    def status(self, wf: str) -> WorkflowRecord:
        fields, states = self._read(wf, events=False)
        return WorkflowRecord.from_stored(wf, dict(zip(_FIELDS, fields)), states)

    @transient
    def history(self, wf: str) -> list[NodeEvent]:
        return unpack_events(self.client.get(self._key(wf, "e")))

    @transient
    def snapshot(self, wf: str) -> tuple[WorkflowRecord, list[NodeEvent]]:
        fields, states, log = self._read(wf, events=True)
        info = WorkflowRecord.from_stored(wf, dict(zip(_FIELDS, fields)), states)
        return info, unpack_events(log) if info.status is not None else []

    @transient
    def list_workflows(
        self, limit: int = 50, status: WorkflowStatus | None = None, before: float | None = None
    ) -> list[WorkflowRecord]:
        if limit <= 0:
            return []
        top = "+inf" if before is None else f"({before!r}"
        wanted = "" if status is None else WorkflowStatus(status).value
        rows = self._list(keys=[self.index_key], args=[self.prefix, limit, wanted, top])
        out = []
        for wf, *fields, states in rows:
            meta = dict(zip(_FIELDS, fields))
            out.append(WorkflowRecord.from_stored(wf.decode(), meta, states))
        return out

    @transient
    def extend(
        self, wf: str, token: str, node: int, segment: bytes, counter: tuple[int, int]
    ) -> bool | None:
        keys = [self._key(wf, k) for k in "mxc"]
        r = self._extend(keys=keys, args=[token, node, segment, *counter])
        return None if r == -1 else bool(r)

    @transient
    def segments(self, wf: str) -> list[bytes]:
        stored = self.client.hgetall(self._key(wf, "x"))
        order = sorted((int(k[6:]), v) for k, v in stored.items() if bytes(k).startswith(b"order:"))
        return [bytes(stored[v]) for _, v in order]

    @transient
    def forget(self, wf: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(*(self._key(wf, k) for k in "msgcexwr"))
        pipe.zrem(self.index_key, wf)
        pipe.execute()

    @transient
    def record_start(self, wf: str, node: str, worker: str) -> None:
        self._record(keys=[self._key(wf, "w"), self._key(wf, "m")], args=[node, worker])

    def begin_record(self, wf: str, node: str, worker: str) -> Callable[[], None]:
        """Send the record now on a connection of its own and read Redis's reply when the
        node ends: the node does not wait a round trip. The command is in the kernel's send
        buffer before the node runs, so it reaches Redis even if this process is killed
        (EVAL with the script's text: no NOSCRIPT after a Redis restart)."""
        pool = self.client.connection_pool
        try:
            conn = pool.get_connection()
        except TypeError:  # redis-py before 5.3 wants a command name
            conn = pool.get_connection("EVAL")
        try:
            keys = (self._key(wf, "w"), self._key(wf, "m"))
            conn.send_command("EVAL", orphan_lua.RECORD, 2, *keys, node, worker)
        except Exception:
            pool.release(conn)
            raise

        def confirm() -> None:
            try:
                conn.read_response()
            finally:
                pool.release(conn)

        return confirm

    @transient
    def starts(self, wf: str, older_than: float) -> tuple[float, dict[str, tuple[float, str]]]:
        r = self._starts(keys=[self._key(wf, "w")], args=[older_than])
        out: dict[str, tuple[float, str]] = {}
        for k, v in zip(r[1::2], r[2::2]):
            at, _, worker = v.decode().partition("|")
            out[k.decode()] = (float(at), worker)
        return float(r[0]), out

    @transient
    def drop_starts(self, wf: str, nodes: list[str]) -> None:
        if nodes:
            self.client.hdel(self._key(wf, "w"), *nodes)

    @transient
    def relaunched(self, wf: str, node: str) -> int:
        keys = [self._key(wf, k) for k in "wrm"]
        return int(self._relaunched(keys=keys, args=[node]))
