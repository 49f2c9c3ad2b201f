"""What the dashboard shows of a run: its view objects (issue 10's WorkflowInfo and NodeInfo
fields), its state in issue 10's names, node times from the event log, and a run's name read
from its encoded graph. Pure: no Celery, no store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from dyrygent.core.states import NodeState, WorkflowStatus
from dyrygent.engine.stores.base import WorkflowRecord
from dyrygent.engine.stores.events import NodeEvent

#: A node state change: (node index, old state, new state, at), states as NodeState values.
Event = tuple[int, int, int, float]
#: NodeState names by value.
STATE_NAMES = tuple(s.name for s in NodeState)

__all__ = [
    "STATE_NAMES",
    "Event",
    "WorkflowRecord",
    "NodeView",
    "NotFound",
    "Unsupported",
    "WorkflowView",
    "as_events",
    "counts_of",
    "first_name",
    "node_times",
    "run_state",
    "unsafe_results",
    "view_of",
]

_IDLE = frozenset({NodeState.WAITING, NodeState.READY})
_DONE = frozenset(
    {
        NodeState.SUCCEEDED,
        NodeState.FAILED,
        NodeState.SKIPPED,
        NodeState.CANCELLED,
        NodeState.UPSTREAM_FAILED,
    }
)
_STATE = {
    WorkflowStatus.SUCCEEDED: "SUCCESS",
    WorkflowStatus.FAILED: "FAILURE",
    WorkflowStatus.ERROR: "ERROR",
    WorkflowStatus.CANCELLED: "CANCELLED",
}


def run_state(status: WorkflowStatus | None, states: bytes) -> str:
    """The run's state as issue 10's WorkflowInfo names it: PENDING (nothing launched yet),
    RUNNING, SUCCESS, FAILURE, ERROR or CANCELLED."""
    if status is None:
        return "UNKNOWN"
    if status is WorkflowStatus.RUNNING:
        idle = states.count(NodeState.WAITING) + states.count(NodeState.READY)
        return "PENDING" if idle == len(states) else "RUNNING"
    return _STATE[status]


def counts_of(states: bytes) -> dict[str, int]:
    """How many nodes are in each state, by state name (states with none left out)."""
    return {s.name: n for s in NodeState if (n := states.count(int(s)))}


class NotFound(LookupError):
    """No such workflow (never created, forgotten or expired), or no such node."""


class Unsupported(RuntimeError):
    """An action this installation cannot do (e.g. relaunch a run not started from a
    definition, or Run with no definitions configured); the message says why."""


@dataclass
class NodeView:
    """One node as the dashboard shows it (the fields of issue 10's NodeInfo, plus its
    parents' indices and its call's index in the graph)."""

    index: int
    id: str
    label: str
    task: str
    state: str
    parents: tuple[int, ...] = ()
    started_at: float | None = None
    ended_at: float | None = None
    attempts: int = 0


@dataclass
class WorkflowView:
    """One run: issue 10's WorkflowInfo fields (``nodes`` empty in lists)."""

    id: str
    state: str
    created: float | None
    ended: float | None
    counts: dict[str, int]
    done: int
    total: int
    name: str | None = None
    updated: float | None = None
    custom_payload: dict[str, Any] = field(default_factory=dict)
    nodes: list[NodeView] = field(default_factory=list)
    cursor: int = 0  # where the event log was read up to (for the changes endpoint)


def view_of(info: WorkflowRecord, name: str | None) -> WorkflowView:
    states = info.states
    done = sum(states.count(int(s)) for s in _DONE)
    return WorkflowView(
        id=info.id,
        state=run_state(info.status, states),
        created=info.created,
        ended=info.ended,
        counts=counts_of(states),
        done=done,
        total=len(states),
        name=name,
        updated=info.ended or info.created,
    )


def unsafe_results(conf: Any) -> bool:
    """Whether reading a result with this Celery config could unpickle (it accepts pickle or
    yaml results): the dashboard then shows none."""
    from dyrygent.engine.trust import UNSAFE_SERIALIZERS

    accepted = conf.result_accept_content or conf.accept_content or ()
    names = {str(conf.result_serializer).lower(), *(str(a).lower() for a in accepted)}
    return any(any(u in n for u in UNSAFE_SERIALIZERS) for n in names)


def first_name(data: bytes | None) -> str | None:
    """The first node's label (or task) in an encoded graph, read without decoding the
    rest (msgpack's streaming unpacker skips the big columns); None if unreadable. Only a
    name for the list: the detail view checks the graph and its signature."""
    if not data:
        return None
    try:
        u = msgpack.Unpacker(raw=False, max_buffer_size=len(data) + 1)
        u.feed(bytes(data))
        fields = u.read_array_header()
        u.skip()  # the magic
        u.skip()  # the format
        u.skip()  # ids
        tasks, task_of = u.unpack(), u.unpack()
        if not task_of:
            return ""
        name = tasks[task_of[0]]
        if fields >= 10:
            for _ in range(4):  # specs, parents, inputs, output
                u.skip()
            for i, label in u.unpack().get("label", ())[:1]:
                name = label if i == 0 else name
        return str(name)
    except Exception:  # anything unreadable: the list shows no name
        return None


def as_events(events: list[NodeEvent]) -> list[Event]:
    """Store events as plain (node, old, new, at) tuples."""
    return [(e.node, int(e.old), int(e.new), e.at) for e in events]


def node_times(size: int, events: list[Event]) -> list[list[Any]]:
    """[started_at, ended_at, attempts] per node from the event log: a launch starts an
    attempt (a node reported RUNNING without a launch seen starts then), a settled state
    ends it."""
    times: list[list[Any]] = [[None, None, 0] for _ in range(size)]
    launched, running, waiting = int(NodeState.LAUNCHED), int(NodeState.RUNNING), 0
    done = {int(s) for s in _DONE}
    for node, _old, new, at in events:
        if node >= size:
            continue
        t = times[node]
        if new == launched:
            t[0], t[1], t[2] = at, None, t[2] + 1
        elif new == running and t[0] is None:
            t[0], t[2] = at, max(t[2], 1)
        elif new in done:
            t[1] = at
        elif new == waiting:  # a retry reopened it
            t[0] = t[1] = None
    return times
