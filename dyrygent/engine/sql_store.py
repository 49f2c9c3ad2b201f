"""The workflow store on Celery's database result backend (``db+postgresql://``, MySQL,
SQLite, ...), in two tables of its own next to Celery's: ``dyrygent_workflow`` (one row per
workflow: meta, graph and state) and ``dyrygent_join`` (join counters).

Every change is a compare-and-set on the row's ``version`` column, so the fence of
:mod:`dyrygent.engine.store` holds across processes and hosts on any SQL database, without
row locks. Time is the database server's clock, never the client's (RELIABILITY.md item 8).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from dyrygent.engine.store import DEFAULT_LEASE, KEEP_AFTER, Claim, Store, claim_rule

__all__ = ["SQLStore"]

_metadata = sa.MetaData()
_BLOB = sa.LargeBinary(length=2**32 - 1)  # LONGBLOB on MySQL, bytea on PostgreSQL
_SECONDS = sa.Float(precision=53)  # double precision everywhere

workflows = sa.Table(
    "dyrygent_workflow",
    _metadata,
    sa.Column("wf", sa.String(155), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("gen", sa.Integer, nullable=False),
    sa.Column("holder", sa.String(255), nullable=False),
    sa.Column("held", _SECONDS),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("dirty", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("deadline", _SECONDS, nullable=False),
    sa.Column("expires", _SECONDS, nullable=False, index=True),
    sa.Column("header", _BLOB),
    sa.Column("graph", _BLOB),
    sa.Column("states", _BLOB, nullable=False),
)
join_table = sa.Table(
    "dyrygent_join",
    _metadata,
    sa.Column("wf", sa.String(155), primary_key=True),
    sa.Column("k", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("n", sa.Integer, nullable=False),
)

_META = [
    workflows.c[k]
    for k in ("version", "gen", "holder", "held", "attempts", "dirty", "status", "deadline")
]
#: Compare-and-set rounds before giving up (each lost round means another claim or commit
#: of the same workflow went through).
_ROUNDS = 200

_engines: dict[tuple[int, str], sa.engine.Engine] = {}
_engines_lock = threading.Lock()


def _engine(url: str, options: Mapping[str, Any]) -> sa.engine.Engine:
    """One pooled engine per process and URL (a forked worker child gets its own), with the
    tables created on first use. No ping before each use (Celery's default engine options
    ask for one: a round trip per transaction); a connection lost to a database restart
    fails one tick, which is retried."""
    key = (os.getpid(), url)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = sa.create_engine(url, **{**options, "pool_pre_ping": False})
            for attempt in range(10):  # workers starting together race to create them
                try:
                    _metadata.create_all(engine, checkfirst=True)
                    break
                except sa.exc.DatabaseError:
                    if attempt == 9:
                        raise
                    time.sleep(0.05 * (attempt + 1))
            _engines[key] = engine
        return engine


def _clock(dialect: str) -> Any:
    """The database server's clock in seconds since the epoch, as a SQL expression."""
    if dialect == "postgresql":
        return sa.func.extract("epoch", sa.func.clock_timestamp())
    if dialect in ("mysql", "mariadb"):  # UTC: the session time zone may have DST
        return (
            sa.func.timestampdiff(
                sa.text("MICROSECOND"), "1970-01-01 00:00:00", sa.func.utc_timestamp(6)
            )
            / 1000000.0
        )
    if dialect == "sqlite":  # one file, one host
        return (sa.func.julianday("now") - 2440587.5) * 86400.0
    return sa.literal(time.time())  # an unknown dialect: this host's clock


class SQLStore(Store):
    """The store in the database of a Celery ``DatabaseBackend``."""

    def __init__(self, url: str, engine_options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self.engine_options = dict(engine_options or {})

    @classmethod
    def for_backend(cls, backend: Any) -> SQLStore:
        return cls(backend.url, getattr(backend, "engine_options", None) or {})

    @property
    def engine(self) -> sa.engine.Engine:
        return _engine(self.url, self.engine_options)

    def _now(self, conn: sa.Connection) -> float:
        return float(conn.execute(sa.select(_clock(conn.dialect.name))).scalar_one())

    def _cas(self, conn: sa.Connection, wf: str, version: int, **values: Any) -> bool:
        """Write ``values`` if the row is still at ``version``; false if someone was first."""
        done = conn.execute(
            workflows.update()
            .where(workflows.c.wf == wf, workflows.c.version == version)
            .values(version=version + 1, **values)
        )
        return done.rowcount == 1

    def create(
        self,
        wf: str,
        graph: bytes,
        header: bytes,
        size: int,
        max_age: int,
        joins: Mapping[int, int] | None = None,
    ) -> None:
        self._forget_expired()
        for attempt in range(_ROUNDS):
            try:
                with self.engine.begin() as conn:
                    now = self._now(conn)
                    conn.execute(
                        workflows.insert().values(
                            wf=wf,
                            version=0,
                            gen=0,
                            holder="",
                            held=None,
                            attempts=0,
                            dirty=False,
                            status="running",
                            deadline=now + max_age,
                            expires=now + max_age + KEEP_AFTER,
                            header=header,
                            graph=graph,
                            states=bytes(size),
                        )
                    )
                    if joins:
                        conn.execute(
                            join_table.insert(),
                            [{"wf": wf, "k": k, "n": n} for k, n in joins.items()],
                        )
                return
            except sa.exc.IntegrityError:  # the id was used before: the new one replaces it
                with self.engine.begin() as conn:
                    conn.execute(join_table.delete().where(join_table.c.wf == wf))
                    conn.execute(workflows.delete().where(workflows.c.wf == wf))
            except sa.exc.OperationalError:  # a deadlock (MySQL's gap locks): again
                if attempt >= 10:
                    raise
                time.sleep(0.01 * (attempt + 1))

    def _forget_expired(self) -> None:
        """Delete the rows of workflows past their maximum age and KEEP_AFTER, best effort
        and in a transaction of its own (Redis lets them expire)."""
        try:
            with self.engine.begin() as conn:
                expired = sa.select(workflows.c.wf).where(
                    workflows.c.expires < _clock(conn.dialect.name)
                )
                conn.execute(join_table.delete().where(join_table.c.wf.in_(expired)))
                conn.execute(
                    workflows.delete().where(workflows.c.expires < _clock(conn.dialect.name))
                )
        except sa.exc.DBAPIError:  # contention: the next workflow tries again
            pass

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

    def load(self, wf: str) -> tuple[bytes | None, bytes | None]:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(workflows.c.graph, workflows.c.header).where(workflows.c.wf == wf)
            ).first()
        return (None, None) if row is None else (row.graph, row.header)

    def claim(
        self, wf: str, gen: int | None, token: str, wake: bool, lease: float = DEFAULT_LEASE
    ) -> Claim:
        for _ in range(_ROUNDS):
            with self.engine.begin() as conn:
                row = conn.execute(
                    sa.select(
                        *_META, workflows.c.states, _clock(conn.dialect.name).label("now")
                    ).where(workflows.c.wf == wf)
                ).first()
                if row is None:
                    return Claim("gone")
                meta = row._asdict()
                now = float(meta["now"])
                status, writes = claim_rule(meta, gen, token, wake, lease, now)
                if writes and not self._cas(conn, wf, meta["version"], **writes):
                    continue
                if status == "busy":
                    return Claim(status, meta["gen"], age=now - float(meta["held"] or now))
                if status not in ("ok", "expired"):
                    return Claim(status, meta["gen"])
                attempts = writes.get("attempts", meta["attempts"])
                return Claim(status, meta["gen"], attempts, bytes(meta["states"]))
        raise RuntimeError(f"workflow {wf}: claim lost {_ROUNDS} compare-and-set rounds")

    def commit(
        self, wf: str, token: str, changes: Mapping[int, int], gen: int, status: str
    ) -> bool | None:
        for _ in range(_ROUNDS):
            with self.engine.begin() as conn:
                row = conn.execute(
                    sa.select(
                        workflows.c.version,
                        workflows.c.holder,
                        workflows.c.dirty,
                        workflows.c.states,
                    ).where(workflows.c.wf == wf)
                ).first()
                if row is None or row.holder != token:
                    return None
                states = bytearray(row.states)
                for i, s in changes.items():
                    states[i] = int(s)
                if self._cas(
                    conn,
                    wf,
                    row.version,
                    states=bytes(states),
                    gen=gen,
                    holder="",
                    status=status,
                    dirty=False,
                ):
                    return bool(row.dirty)
        raise RuntimeError(f"workflow {wf}: commit lost {_ROUNDS} compare-and-set rounds")

    def _if_holder(self, wf: str, token: str, **values: Any) -> bool:
        with self.engine.begin() as conn:
            if "held" in values:
                values["held"] = _clock(conn.dialect.name)
            done = conn.execute(
                workflows.update()
                .where(workflows.c.wf == wf, workflows.c.holder == token)
                .values(version=workflows.c.version + 1, **values)
            )
            return done.rowcount == 1

    def release(self, wf: str, token: str) -> None:
        self._if_holder(wf, token, holder="", attempts=0)

    def touch(self, wf: str, token: str) -> bool:
        return self._if_holder(wf, token, held=None)

    def status(self, wf: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(*_META, workflows.c.header, workflows.c.states).where(
                    workflows.c.wf == wf
                )
            ).first()
        if row is None:
            return {"states": b""}
        meta = row._asdict()
        meta["states"] = bytes(meta["states"])
        return meta
