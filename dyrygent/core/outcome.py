"""A workflow's outcome: a pure function of its graph and its node states.

Airflow's rule, which is also what a Celery canvas does: a workflow *fails* as soon as one of
its leaves (nodes nothing depends on) failed, was upstream-failed or was cancelled; it
*succeeds* when no node can change any more and every leaf succeeded or was skipped.

Two moments matter, and they may differ:

* the outcome is **decided** when a leaf fails (the workflow's ``get()`` raises from then
  on, as a native group's ``get()`` raises while its other members still run), or when
  everything is settled;
* the workflow **ends** when no node is waiting, ready or in flight: independent branches
  keep running after a failure has decided the outcome, as they do natively.

With ``fail_fast`` the first failed node decides and ends the workflow at once: nothing
more is launched, and the nodes that had not started are CANCELLED.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from dyrygent.core.graph import Graph
from dyrygent.core.states import NodeState, WorkflowStatus

__all__ = ["Verdict", "UNFINISHED", "culprit", "failing_leaf", "unfinished", "verdict"]

_FAILED_BYTES = bytes([NodeState.FAILED, NodeState.UPSTREAM_FAILED, NodeState.CANCELLED])
#: Node states that may still change without a retry.
UNFINISHED = bytes([NodeState.WAITING, NodeState.READY, NodeState.LAUNCHED, NodeState.RUNNING])


@dataclass(frozen=True)
class Verdict:
    """``status``: SUCCEEDED or FAILED once decided, else None; ``ended``: nothing can change
    any more; ``culprit``: the failed node whose error is the workflow's (None when the
    failure has no node of its own, e.g. a leaf that was cancelled)."""

    status: WorkflowStatus | None
    ended: bool
    culprit: int | None = None


def unfinished(states: bytes | bytearray) -> int:
    """How many nodes may still change (C-speed counts: this runs every tick)."""
    return sum(states.count(b) for b in UNFINISHED)


def _any_failure(states: bytes | bytearray) -> bool:
    return any(b in states for b in _FAILED_BYTES)


def failing_leaf(graph: Graph, states: bytes | bytearray) -> int | None:
    """The lowest leaf that failed, was upstream-failed or cancelled; None if none did."""
    if not _any_failure(states):
        return None
    failed = _FAILED_BYTES
    for leaf in graph.leaves:
        if states[leaf] in failed:
            return leaf
    return None


def culprit(graph: Graph, states: bytes | bytearray, node: int) -> int | None:
    """The lowest FAILED node among ``node`` and its ancestors: the error behind it."""
    if states[node] == NodeState.FAILED:
        return node
    seen = {node}
    queue = deque([node])
    found: list[int] = []
    nodes = graph.nodes
    while queue:
        for p in nodes[queue.popleft()].parents:
            if p in seen:
                continue
            seen.add(p)
            if states[p] == NodeState.FAILED:
                found.append(p)
            elif states[p] in _FAILED_BYTES:
                queue.append(p)
    return min(found) if found else None


def verdict(graph: Graph, states: bytes | bytearray, *, fail_fast: bool = False) -> Verdict:
    """The workflow's outcome given ``states`` (see the module docstring)."""
    ended = unfinished(states) == 0
    if fail_fast and NodeState.FAILED in states:
        return Verdict(WorkflowStatus.FAILED, True, states.index(NodeState.FAILED))
    leaf = failing_leaf(graph, states)
    if leaf is not None:
        return Verdict(WorkflowStatus.FAILED, ended, culprit(graph, states, leaf))
    if ended:
        return Verdict(WorkflowStatus.SUCCEEDED, True)
    return Verdict(None, False)
