"""What a workflow looks like from outside: frozen values read from the store, and the pure
functions that derive them from a stored record and its node events.

Nothing here touches Celery: :mod:`dyrygent.engine.watching` reads the store and the result
backend, then calls :func:`describe`. Times are seconds since the epoch by the store's clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dyrygent.core.graph import Graph
from dyrygent.core.states import DONE_STATES, NodeState, WorkflowStatus

__all__ = [
    "HistoryEvent",
    "NodeInfo",
    "Progress",
    "WorkflowInfo",
    "describe",
    "history_of",
    "progress_of",
    "state_name",
]

#: The workflow states ``info().state`` takes, by stored status (None: not known yet).
_STATE_NAMES: dict[WorkflowStatus | None, str] = {
    None: "PENDING",
    WorkflowStatus.RUNNING: "RUNNING",
    WorkflowStatus.SUCCEEDED: "SUCCESS",
    WorkflowStatus.FAILED: "FAILURE",
    WorkflowStatus.ERROR: "ERROR",
    WorkflowStatus.CANCELLED: "CANCELLED",
}
_STARTS = (NodeState.LAUNCHED, NodeState.RUNNING)


@dataclass(frozen=True)
class Progress:
    """``done`` of ``total`` nodes are settled (succeeded, failed, skipped, cancelled or
    upstream-failed)."""

    done: int
    total: int


@dataclass(frozen=True)
class NodeInfo:
    """One node: ``state`` is a NodeState name; ``started_at`` the first time it was
    launched, ``ended_at`` the last time it settled, ``attempts`` how many times it was
    launched (a retry launches it again); ``error`` ``{"type", "message"}`` of a FAILED node;
    ``custom_payload`` the one given to ``add_signature``; ``parents`` its parents' ids (the
    graph's edges, for pictures).
    """

    id: str
    label: str
    task: str
    state: str
    started_at: float | None = None
    ended_at: float | None = None
    attempts: int = 0
    error: dict[str, str] | None = None
    custom_payload: Any = None
    parents: tuple[str, ...] = ()


@dataclass(frozen=True)
class WorkflowInfo:
    """One workflow: ``state`` is PENDING (not known yet), RUNNING, SUCCESS, FAILURE, ERROR
    or CANCELLED; ``counts`` the number of nodes in each NodeState (every state present);
    ``nodes`` empty when listed by :func:`dyrygent.list_workflows`."""

    id: str
    state: str
    created: float | None
    ended: float | None
    counts: dict[str, int]
    progress: Progress
    custom_payload: dict[str, Any] | None = None
    nodes: tuple[NodeInfo, ...] = ()


@dataclass(frozen=True)
class HistoryEvent:
    """A node's state change: node id, old and new NodeState names, and when (store clock)."""

    node: str
    old: str
    new: str
    at: float


def state_name(status: WorkflowStatus | None) -> str:
    """The public name of a stored workflow status."""
    return _STATE_NAMES[status]


def progress_of(states: bytes) -> Progress:
    """How many nodes of ``states`` are settled (C-speed counts)."""
    return Progress(sum(states.count(s) for s in DONE_STATES), len(states))


def _counts(states: bytes) -> dict[str, int]:
    return {s.name: states.count(s) for s in NodeState}


def history_of(graph: Graph, events: Sequence[Any]) -> list[HistoryEvent]:
    """The store's node events (NodeEvent) with node ids and state names."""
    nodes = graph.nodes
    return [HistoryEvent(nodes[e.node].id, e.old.name, e.new.name, e.at) for e in events]


def describe(
    wf: str,
    status: WorkflowStatus | None,
    created: float | None,
    ended: float | None,
    states: bytes,
    graph: Graph | None = None,
    events: Sequence[Any] = (),
    errors: Mapping[int, dict[str, str]] | None = None,
    custom_payload: dict[str, Any] | None = None,
    node_payloads: Mapping[str, Any] | None = None,
) -> WorkflowInfo:
    """The WorkflowInfo of a stored workflow; per-node details when ``graph`` is given.

    ``events`` are the store's NodeEvents in commit order; ``errors`` the error of each
    FAILED node by index. A node's ``started_at`` is its first event into LAUNCHED or
    RUNNING, ``ended_at`` its last event into a settled state, ``attempts`` its events into
    LAUNCHED. Pure: no store, no Celery.
    """
    nodes: tuple[NodeInfo, ...] = ()
    if graph is not None:
        started: dict[int, float] = {}
        ended_at: dict[int, float] = {}
        attempts: dict[int, int] = {}
        for e in events:
            if e.new in _STARTS and e.node not in started:
                started[e.node] = e.at
            if e.new is NodeState.LAUNCHED:
                attempts[e.node] = attempts.get(e.node, 0) + 1
            if e.new in DONE_STATES:
                ended_at[e.node] = e.at
        errors = errors or {}
        payloads = node_payloads or {}
        nodes = tuple(
            NodeInfo(
                id=n.id,
                label=n.label or n.task,
                task=n.task,
                state=NodeState(states[i]).name if i < len(states) else "WAITING",
                started_at=started.get(i),
                ended_at=ended_at.get(i) if i < len(states) and states[i] in DONE_STATES else None,
                attempts=attempts.get(i, 0),
                error=errors.get(i),
                custom_payload=payloads.get(n.id),
                parents=tuple(graph.nodes[p].id for p in n.parents),
            )
            for i, n in enumerate(graph.nodes)
        )
    return WorkflowInfo(
        id=wf,
        state=state_name(status),
        created=created,
        ended=ended,
        counts=_counts(states),
        progress=progress_of(states),
        custom_payload=custom_payload,
        nodes=nodes,
    )
