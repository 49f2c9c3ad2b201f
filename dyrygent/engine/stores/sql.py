"""The workflow store on Celery's database result backend (``db+postgresql://``, MySQL,
SQLite, ...), in tables of its own next to Celery's (:mod:`dyrygent.engine.stores.sql_schema`
says which, and why the event log is one row per commit).

Every change is a compare-and-set on the row's ``version`` column, so the fence of
:mod:`dyrygent.engine.stores.base` holds across processes and hosts on any SQL database,
without row locks. Time is the database server's clock, never the client's (README,
Reliability, item 8). A snapshot reads the row, then the events of commits before its
version: consistent at any isolation level.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from dyrygent.core.states import WorkflowStatus
from dyrygent.engine.failures import transient
from dyrygent.engine.stores import sql_reads
from dyrygent.engine.stores.base import (
    DEFAULT_LEASE,
    KEEP_AFTER,
    Claim,
    ClaimStatus,
    Store,
    WorkflowRecord,
    claim_rule,
)
from dyrygent.engine.stores.events import (
    NodeEvent,
    diff,
    pack_events,
)
from dyrygent.engine.stores.sql_schema import (
    clock,
    engine_for,
    event_table,
    join_table,
    segment_table,
    workflows,
)

__all__ = ["SQLStore"]

_META = [
    workflows.c[k]
    for k in ("version", "gen", "holder", "held", "attempts", "dirty", "status", "deadline")
]
#: Compare-and-set rounds before giving up (each lost round means another claim or commit
#: of the same workflow went through).
_ROUNDS = 200


class SQLStore(Store):
    """The store in the database of a Celery ``DatabaseBackend``."""

    def __init__(self, url: str, engine_options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self.engine_options = dict(engine_options or {})

    @classmethod
    def for_backend(cls, backend: Any) -> SQLStore:
        """The store in the database of ``backend`` (a Celery DatabaseBackend)."""
        return cls(backend.url, getattr(backend, "engine_options", None) or {})

    @property
    def engine(self) -> sa.engine.Engine:
        return engine_for(self.url, self.engine_options)

    def _cas(self, conn: sa.Connection, wf: str, version: int, **values: Any) -> bool:
        """Write ``values`` if the row is still at ``version``; false if someone was first."""
        done = conn.execute(
            workflows.update()
            .where(workflows.c.wf == wf, workflows.c.version == version)
            .values(version=version + 1, **values)
        )
        return done.rowcount == 1

    @staticmethod
    def _delete(conn: sa.Connection, wf: Any) -> None:
        """Delete the rows of ``wf`` (an id, or a select of ids) but the workflow's own."""
        for table in (join_table, event_table, segment_table):
            match = table.c.wf == wf if isinstance(wf, str) else table.c.wf.in_(wf)
            conn.execute(table.delete().where(match))

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
        self._forget_expired()
        for attempt in range(_ROUNDS):
            try:
                with self.engine.begin() as conn:
                    now = float(conn.execute(sa.select(clock(conn.dialect.name))).scalar_one())
                    conn.execute(
                        workflows.insert().values(
                            wf=wf,
                            version=0,
                            gen=0,
                            holder="",
                            held=None,
                            attempts=0,
                            dirty=False,
                            status=WorkflowStatus.RUNNING.value,
                            deadline=now + max_age,
                            expires=now + max_age + keep,
                            header=header,
                            graph=graph,
                            states=bytes(size) if states is None else bytes(states),
                            created=now,
                        )
                    )
                    if joins:
                        conn.execute(
                            join_table.insert(),
                            [{"wf": wf, "k": k, "n": n} for k, n in joins.items()],
                        )
                return
            except sa.exc.IntegrityError:  # the id was used before: the new one replaces it
                self.forget(wf)
            except sa.exc.OperationalError:  # a deadlock (MySQL's gap locks): again
                if attempt >= 10:
                    raise
                time.sleep(0.01 * (attempt + 1))

    def _forget_expired(self) -> None:
        """Delete the rows of workflows past their maximum age and KEEP_AFTER, best effort
        and in a transaction of its own (Redis lets them expire)."""
        try:
            with self.engine.begin() as conn:
                now = clock(conn.dialect.name)
                self._delete(conn, sa.select(workflows.c.wf).where(workflows.c.expires < now))
                conn.execute(workflows.delete().where(workflows.c.expires < now))
        except sa.exc.DBAPIError:  # contention: the next workflow tries again
            pass

    @transient
    def count_down(self, wf: str, counters: list[int]) -> bool:
        if not counters:
            return False
        mine = (join_table.c.wf == wf) & join_table.c.k.in_(counters)
        update = join_table.update().where(mine).values(n=join_table.c.n - 1)
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # only a hint: no need to wait for the disk
                conn.execute(sa.text("SET LOCAL synchronous_commit TO OFF"))
            if getattr(conn.dialect, "update_returning", False):  # SQLAlchemy 2
                return any(n <= 0 for n in conn.execute(update.returning(join_table.c.n)).scalars())
            conn.execute(update)
            hits = conn.execute(
                sa.select(sa.func.count())
                .select_from(join_table)
                .where(mine & (join_table.c.n <= 0))
            ).scalar_one()
        return bool(hits)

    @transient
    def load(self, wf: str) -> tuple[bytes | None, bytes | None]:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(workflows.c.graph, workflows.c.header).where(workflows.c.wf == wf)
            ).first()
        return (None, None) if row is None else (row.graph, row.header)

    @transient
    def claim(
        self, wf: str, gen: int | None, token: str, wake: bool, lease: float = DEFAULT_LEASE
    ) -> Claim:
        for _ in range(_ROUNDS):
            with self.engine.begin() as conn:
                row = conn.execute(
                    sa.select(
                        *_META, workflows.c.states, clock(conn.dialect.name).label("now")
                    ).where(workflows.c.wf == wf)
                ).first()
                if row is None:
                    return Claim(ClaimStatus.GONE)
                meta = row._asdict()
                now = float(meta["now"])
                status, writes = claim_rule(meta, gen, token, wake, lease, now)
                if writes and not self._cas(conn, wf, meta["version"], **writes):
                    continue
                return Claim.from_rule(status, meta, writes, now, meta["states"])
        raise RuntimeError(f"workflow {wf}: claim lost {_ROUNDS} compare-and-set rounds")

    @transient
    def commit(
        self, wf: str, token: str, changes: Mapping[int, int], gen: int, status: WorkflowStatus
    ) -> bool | None:
        status = WorkflowStatus(status)
        for _ in range(_ROUNDS):
            with self.engine.begin() as conn:
                row = conn.execute(
                    sa.select(
                        workflows.c.version,
                        workflows.c.holder,
                        workflows.c.dirty,
                        workflows.c.states,
                        clock(conn.dialect.name).label("now"),
                    ).where(workflows.c.wf == wf)
                ).first()
                if row is None or row.holder != token:
                    return None
                now = float(row.now)
                events = diff(bytes(row.states), changes)
                states = bytearray(row.states)
                for i, s in changes.items():
                    if i >= len(states):
                        states.extend(bytes(i + 1 - len(states)))
                    states[i] = int(s)
                values: dict[str, Any] = {"gen": gen, "holder": "", "dirty": False}
                values.update(states=bytes(states), status=status.value)
                if status is not WorkflowStatus.RUNNING:
                    values["ended"] = now
                if self._cas(conn, wf, row.version, **values):
                    if events:
                        conn.execute(
                            event_table.insert().values(
                                wf=wf, seq=row.version, data=pack_events(now, events)
                            )
                        )
                    return bool(row.dirty)
        raise RuntimeError(f"workflow {wf}: commit lost {_ROUNDS} compare-and-set rounds")

    @transient
    def reopen(
        self,
        wf: str,
        gen: int,
        changes: Mapping[int, int],
        max_age: int,
        keep: float = KEEP_AFTER,
    ) -> bool:
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(
                    workflows.c.version,
                    workflows.c.gen,
                    workflows.c.holder,
                    workflows.c.status,
                    workflows.c.states,
                    clock(conn.dialect.name).label("now"),
                ).where(workflows.c.wf == wf)
            ).first()
            if (
                row is None
                or row.status == WorkflowStatus.RUNNING.value
                or row.gen != gen
                or row.holder
            ):
                return False
            now = float(row.now)
            events = diff(bytes(row.states), changes)
            states = bytearray(row.states)
            for i, s in changes.items():
                states[i] = int(s)
            values: dict[str, Any] = {"gen": gen + 1, "holder": "", "attempts": 0}
            values.update(dirty=False, status=WorkflowStatus.RUNNING.value, ended=None)
            values.update(states=bytes(states), deadline=now + max_age)
            values.update(expires=now + max_age + keep)
            if not self._cas(conn, wf, row.version, **values):
                return False  # a concurrent reopen won
            if events:
                conn.execute(
                    event_table.insert().values(
                        wf=wf, seq=row.version, data=pack_events(now, events)
                    )
                )
            return True

    def _if_holder(self, wf: str, token: str, **values: Any) -> bool:
        with self.engine.begin() as conn:
            if "held" in values:
                values["held"] = clock(conn.dialect.name)
            done = conn.execute(
                workflows.update()
                .where(workflows.c.wf == wf, workflows.c.holder == token)
                .values(version=workflows.c.version + 1, **values)
            )
            return done.rowcount == 1

    @transient
    def release(self, wf: str, token: str) -> None:
        self._if_holder(wf, token, holder="", attempts=0)

    @transient
    def touch(self, wf: str, token: str) -> bool:
        return self._if_holder(wf, token, held=None)

    @transient
    def status(self, wf: str) -> WorkflowRecord:
        return sql_reads.status(self.engine, wf)

    @transient
    def snapshot(self, wf: str) -> tuple[WorkflowRecord, list[NodeEvent]]:
        return sql_reads.snapshot(self.engine, wf)

    @transient
    def list_workflows(
        self, limit: int = 50, status: WorkflowStatus | None = None, before: float | None = None
    ) -> list[WorkflowRecord]:
        return sql_reads.list_workflows(self.engine, limit, status, before)

    @transient
    def segments(self, wf: str) -> list[bytes]:
        return sql_reads.segments(self.engine, wf)

    @transient
    def history(self, wf: str) -> list[NodeEvent]:
        return self.snapshot(wf)[1]

    @transient
    def extend(
        self, wf: str, token: str, node: int, segment: bytes, counter: tuple[int, int]
    ) -> bool | None:
        with self.engine.begin() as conn:
            holder = conn.execute(
                sa.select(workflows.c.holder).where(workflows.c.wf == wf)
            ).scalar()
            if holder != token:
                return None
            seq = conn.execute(
                sa.select(sa.func.count())
                .select_from(segment_table)
                .where(segment_table.c.wf == wf)
            ).scalar()
            exists = conn.execute(
                sa.select(segment_table.c.node).where(
                    segment_table.c.wf == wf, segment_table.c.node == node
                )
            ).first()
            if exists is not None:
                return False
            conn.execute(segment_table.insert().values(wf=wf, node=node, seq=seq, data=segment))
            conn.execute(join_table.insert().values(wf=wf, k=counter[0], n=counter[1]))
            return True

    @transient
    def forget(self, wf: str) -> None:
        with self.engine.begin() as conn:
            self._delete(conn, wf)
            conn.execute(workflows.delete().where(workflows.c.wf == wf))
