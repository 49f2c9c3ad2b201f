"""The tables of :mod:`dyrygent.engine.stores.sql`, one pooled engine per process and URL,
and the database server's clock.

``dyrygent_workflow`` has one row per workflow (meta, graph and state; ``created`` and
``ended`` are added by ALTER TABLE to a table created by a release without them, and old
rows keep them NULL), ``dyrygent_join`` its join counters, and ``dyrygent_event`` one row
per commit that changed nodes: ``data`` is that commit's group of the event log
(:mod:`dyrygent.engine.stores.events`: time, count, 6 bytes per event) and ``seq`` the
workflow row's version the commit replaced. One row per commit, not per event, keeps a
commit of 10,000 changes one INSERT (the processor's hot path), uses the same bytes as Redis,
and needs nothing of the old table.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

__all__ = ["clock", "engine_for", "event_table", "join_table", "segment_table", "workflows"]

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
    sa.Column("created", _SECONDS, index=True),
    sa.Column("ended", _SECONDS),
)
join_table = sa.Table(
    "dyrygent_join",
    _metadata,
    sa.Column("wf", sa.String(155), primary_key=True),
    sa.Column("k", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("n", sa.Integer, nullable=False),
)
event_table = sa.Table(
    "dyrygent_event",
    _metadata,
    sa.Column("wf", sa.String(155), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("data", _BLOB, nullable=False),
)
segment_table = sa.Table(
    "dyrygent_segment",
    _metadata,
    sa.Column("wf", sa.String(155), primary_key=True),
    sa.Column("node", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("data", _BLOB, nullable=False),
)
#: Columns a release may not have created, added at engine setup.
_ADDED = ("created", "ended")

_engines: dict[tuple[int, str], sa.engine.Engine] = {}
_engines_lock = threading.Lock()


def _upgrade(engine: sa.engine.Engine) -> None:
    """Create the tables, and add the columns and index a table created by an older
    release lacks (its rows keep NULL there)."""
    _metadata.create_all(engine, checkfirst=True)
    have = {c["name"] for c in sa.inspect(engine).get_columns(workflows.name)}
    missing = [workflows.c[name] for name in _ADDED if name not in have]
    if not missing:
        return
    with engine.begin() as conn:
        for col in missing:
            kind = col.type.compile(dialect=engine.dialect)
            conn.execute(sa.text(f"ALTER TABLE {workflows.name} ADD COLUMN {col.name} {kind}"))
    for index in workflows.indexes:
        if any(c.name in _ADDED for c in index.columns):
            index.create(engine, checkfirst=True)


def engine_for(url: str, options: Mapping[str, Any]) -> sa.engine.Engine:
    """One pooled engine per process and URL (a forked worker child gets its own), with the
    tables created or upgraded on first use. No ping before each use (Celery's default
    engine options ask for one: a round trip per transaction); a connection lost to a
    database restart fails one tick, which is retried."""
    key = (os.getpid(), url)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = sa.create_engine(url, **{**options, "pool_pre_ping": False})
            for attempt in range(10):  # workers starting together race to create them
                try:
                    _upgrade(engine)
                    break
                except sa.exc.DatabaseError:
                    if attempt == 9:
                        raise
                    time.sleep(0.05 * (attempt + 1))
            _engines[key] = engine
        return engine


def clock(dialect: str) -> Any:
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
