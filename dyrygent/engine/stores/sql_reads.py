"""Reads of the SQL store (one connection each; see :mod:`dyrygent.engine.stores.sql`)."""

from __future__ import annotations

import sqlalchemy as sa

from dyrygent.core.states import WorkflowStatus
from dyrygent.engine.stores.base import WorkflowRecord
from dyrygent.engine.stores.events import EVENTS_VERSION, NodeEvent, unpack_events
from dyrygent.engine.stores.sql_schema import clock, event_table, segment_table, workflows

__all__ = ["INFO", "list_workflows", "segments", "snapshot", "status"]

#: The columns a WorkflowRecord is made of.
INFO = [workflows.c[k] for k in ("status", "gen", "holder", "attempts", "created", "ended")]


def status(engine: sa.engine.Engine, wf: str) -> WorkflowRecord:
    with engine.connect() as conn:
        row = conn.execute(sa.select(*INFO, workflows.c.states).where(workflows.c.wf == wf)).first()
    return (
        WorkflowRecord(wf)
        if row is None
        else WorkflowRecord.from_stored(wf, row._asdict(), row.states)
    )


def snapshot(engine: sa.engine.Engine, wf: str) -> tuple[WorkflowRecord, list[NodeEvent]]:
    with engine.begin() as conn:
        row = conn.execute(
            sa.select(*INFO, workflows.c.version, workflows.c.states).where(workflows.c.wf == wf)
        ).first()
        if row is None:
            return WorkflowRecord(wf), []
        groups = conn.execute(
            sa.select(event_table.c.data)
            .where(event_table.c.wf == wf, event_table.c.seq < row.version)
            .order_by(event_table.c.seq)
        ).scalars()
        log = EVENTS_VERSION + b"".join(bytes(g) for g in groups)
    return WorkflowRecord.from_stored(wf, row._asdict(), row.states), unpack_events(log)


def list_workflows(
    engine: sa.engine.Engine,
    limit: int = 50,
    status: WorkflowStatus | None = None,
    before: float | None = None,
) -> list[WorkflowRecord]:
    with engine.connect() as conn:
        query = (
            sa.select(workflows.c.wf, *INFO, workflows.c.states)
            .where(
                workflows.c.created.is_not(None),
                workflows.c.expires >= clock(conn.dialect.name),
            )
            .order_by(workflows.c.created.desc())
            .limit(limit)
        )
        if status is not None:
            query = query.where(workflows.c.status == WorkflowStatus(status).value)
        if before is not None:
            query = query.where(workflows.c.created < before)
        rows = conn.execute(query).all()
    return [WorkflowRecord.from_stored(r.wf, r._asdict(), r.states) for r in rows]


def segments(engine: sa.engine.Engine, wf: str) -> list[bytes]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(segment_table.c.data)
            .where(segment_table.c.wf == wf)
            .order_by(segment_table.c.seq)
        )
        return [bytes(r.data) for r in rows]
