"""Reading a workflow's state from any process: its info, progress and history, and the list
of stored workflows. Read-only: nothing here claims or writes.

A workflow's info takes one store round trip for its record and events (``snapshot``), one
for its graph and header (cached per process: they never change), and one batched read of
the failed nodes' metas (only when some failed), whatever the workflow's size.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from dyrygent.core.states import NodeState, WorkflowStatus
from dyrygent.engine.loading import Loaded, read_stored
from dyrygent.engine.results import error_of, read_metas
from dyrygent.engine.stores import Store, store_for
from dyrygent.errors import SteeringError
from dyrygent.info import (
    HistoryEvent,
    Progress,
    WorkflowInfo,
    describe,
    history_of,
    progress_of,
)

__all__ = ["list_workflows", "load_view", "workflow_history", "workflow_info", "workflow_progress"]

_CACHE_SIZE = 256
_cache: OrderedDict[tuple[int, str], Loaded] = OrderedDict()
_STATUS_OF = {
    "RUNNING": WorkflowStatus.RUNNING,
    "SUCCESS": WorkflowStatus.SUCCEEDED,
    "FAILURE": WorkflowStatus.FAILED,
    "ERROR": WorkflowStatus.ERROR,
    "CANCELLED": WorkflowStatus.CANCELLED,
}


def load_view(app: Any, store: Store, wf: str, size: int = 0) -> Loaded | None:
    """``wf``'s graph and header (unchecked: a read-only view), cached; None if gone.
    ``size``: the number of node states now stored; a cached graph with fewer nodes has grown
    since (an expansion) and is read again."""
    key = (id(app), wf)
    cached = _cache.get(key)
    if cached is not None and len(cached.graph) >= size:
        _cache.move_to_end(key)
        return cached
    loaded = read_stored(app, store, wf)
    if loaded is not None:
        _cache[key] = loaded
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return loaded


def forget_view(app: Any, wf: str) -> None:
    _cache.pop((id(app), wf), None)


def workflow_info(app: Any, wf: str) -> WorkflowInfo:
    """The workflow ``wf`` with its nodes; state PENDING when the store does not know it
    (not stored yet, forgotten or expired)."""
    store = store_for(app)
    record, events = store.snapshot(wf)
    if record.status is None:
        return describe(wf, None, None, None, b"")
    loaded = load_view(app, store, wf, len(record.states))
    if loaded is None:  # forgotten between the two reads
        return describe(wf, None, None, None, b"")
    graph, header = loaded.graph, loaded.header
    failed = [i for i, s in enumerate(record.states) if s == NodeState.FAILED]
    metas = read_metas(app.backend, [graph.nodes[i].id for i in failed])
    errors = {i: error_of(m, graph.nodes[i].id) for i, m in zip(failed, metas)}
    return describe(
        wf,
        record.status,
        record.created,
        record.ended,
        record.states,
        graph,
        events,
        errors,
        header.custom_payload,
        header.node_payloads,
    )


def workflow_progress(app: Any, wf: str) -> Progress:
    """Settled nodes of all (one read of the state bytes)."""
    return progress_of(store_for(app).status(wf).states)


def workflow_history(app: Any, wf: str) -> list[HistoryEvent]:
    """Every node state change of ``wf``, in commit order (empty if unknown)."""
    store = store_for(app)
    events = store.history(wf)
    if not events:
        return []
    loaded = load_view(app, store, wf)
    return [] if loaded is None else history_of(loaded.graph, events)


def list_workflows(app: Any, state: str | None = None, limit: int = 50) -> list[WorkflowInfo]:
    """Up to ``limit`` stored workflows of ``app``, newest first, optionally only those in
    ``state`` (RUNNING, SUCCESS, FAILURE, ERROR or CANCELLED; any case; the stored
    statuses ``succeeded`` and ``failed`` too); ``nodes`` and
    ``custom_payload`` are left empty (one read of the store's index).
    Raises SteeringError for an unknown state."""
    status = None
    if state is not None:
        name = str(state)
        status = _STATUS_OF.get(name.upper()) or next(
            (s for s in WorkflowStatus if s.value == name.lower()), None
        )
        if status is None:
            raise SteeringError(
                f"list_workflows(state={state!r}): unknown state; use one of {sorted(_STATUS_OF)}"
            )
    records = store_for(app).list_workflows(limit=limit, status=status)
    return [describe(r.id, r.status, r.created, r.ended, r.states) for r in records]
