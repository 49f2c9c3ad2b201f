"""A read-only stand-in for the result API of issue 10, built on what the store offers today.

DELETE THIS MODULE when ``WorkflowResult.info()`` and ``dyrygent.list_workflows`` land
(branch ``steer``): :mod:`dyrygent.cli.source` uses them as soon as they exist. It has the
same names and fields (``info()``, ``progress()``, ``history()``, ``list_workflows``);
``cancel`` and ``retry`` need the processor's side of steering and are refused.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from dyrygent.core.graph import Graph
from dyrygent.core.states import DONE_STATES, NodeState, WorkflowStatus
from dyrygent.engine.loading import read_graph
from dyrygent.engine.results import exception_of, read_metas
from dyrygent.engine.stores import NodeEvent, store_for
from dyrygent.engine.stores import WorkflowInfo as StoredInfo
from dyrygent.errors import ConfigurationError

__all__ = ["StandInResult", "list_workflows"]

STATE_OF_STATUS = {
    None: "PENDING",
    WorkflowStatus.RUNNING: "RUNNING",
    WorkflowStatus.SUCCEEDED: "SUCCESS",
    WorkflowStatus.FAILED: "FAILURE",
    WorkflowStatus.ERROR: "ERROR",
    WorkflowStatus.CANCELLED: "CANCELLED",
}


@dataclass(frozen=True)
class Progress:
    done: int
    total: int


@dataclass(frozen=True)
class NodeInfo:
    id: str
    label: str
    task: str
    state: str
    started_at: float | None
    ended_at: float | None
    attempts: int
    error: dict[str, str] | None
    custom_payload: Any = None


@dataclass(frozen=True)
class Info:
    id: str
    state: str
    created: float | None
    ended: float | None
    counts: dict[str, int]
    progress: Progress
    custom_payload: Any = None
    nodes: tuple[NodeInfo, ...] = ()


def _progress(states: bytes) -> Progress:
    return Progress(sum(1 for s in states if s in DONE_STATES), len(states))


def _summary(stored: StoredInfo) -> Info:
    counts = Counter(NodeState(s).name for s in stored.states)
    return Info(
        stored.id,
        STATE_OF_STATUS[stored.status],
        stored.created,
        stored.ended,
        dict(counts),
        _progress(stored.states),
    )


class StandInResult:
    """``WorkflowResult(wf, app=app)``'s reading half, from the store and the result backend."""

    def __init__(self, id: str, app: Any) -> None:
        self.id = id
        self.app = app
        self._graph: Graph | None = None

    def _read(self) -> tuple[StoredInfo, list[NodeEvent], Graph | None]:
        store = store_for(self.app)
        stored, events = store.snapshot(self.id)
        if self._graph is None and stored.status is not None:
            self._graph = read_graph(self.app, store, self.id)
        return stored, events, self._graph

    def progress(self) -> Progress:
        return _progress(store_for(self.app).status(self.id).states)

    def info(self) -> Info:
        stored, events, graph = self._read()
        summary = _summary(stored)
        if graph is None:
            return summary
        started: dict[int, float] = {}
        ended: dict[int, float] = {}
        attempts: Counter[int] = Counter()
        for e in events:
            if e.new is NodeState.LAUNCHED:
                attempts[e.node] += 1
            if e.new in (NodeState.LAUNCHED, NodeState.RUNNING):
                started.setdefault(e.node, e.at)
            if e.new in DONE_STATES:
                ended[e.node] = e.at
        failed = [i for i, s in enumerate(stored.states) if s == NodeState.FAILED]
        metas = read_metas(self.app.backend, [graph.nodes[i].id for i in failed])
        errors = {}
        for i, meta in zip(failed, metas):
            exc = exception_of(meta, graph.nodes[i].id)
            errors[i] = {"type": type(exc).__name__, "message": str(exc)}
        nodes = tuple(
            NodeInfo(
                n.id,
                n.name,
                n.task,
                NodeState(stored.states[i]).name,
                started.get(i),
                ended.get(i),
                attempts[i],
                errors.get(i),
            )
            for i, n in enumerate(graph.nodes)
        )
        return Info(**{**summary.__dict__, "nodes": nodes})

    def history(self) -> list[tuple[str, str, str, float]]:
        _, events, graph = self._read()
        if graph is None:
            return []
        return [(graph.nodes[e.node].id, e.old.name, e.new.name, e.at) for e in events]

    def _steer(self, what: str) -> None:
        raise ConfigurationError(
            f"{what}() of workflow {self.id}: this dyrygent has no steering API yet "
            f"(WorkflowResult.{what}(), issue 10): upgrade dyrygent"
        )

    def cancel(self, terminate: bool = False) -> None:
        self._steer("cancel")

    def retry(self, nodes: Any = None) -> None:
        self._steer("retry")


def list_workflows(app: Any, state: str | None = None, limit: int = 50) -> list[Info]:
    """The newest ``limit`` workflows (optionally only those in ``state``), as summaries."""
    status = {v: k for k, v in STATE_OF_STATUS.items()}[state] if state else None
    if state == "PENDING":
        return []
    return [_summary(s) for s in store_for(app).list_workflows(limit=limit, status=status)]
