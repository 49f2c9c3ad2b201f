"""Planning one processor tick: a pure function of the graph, the states and what was seen.

The processor reads the states, observes the outcome of every LAUNCHED node, and asks
:func:`plan_tick` what to do. The plan records outcomes, moves newly ready nodes to READY and
lists every READY node to launch. The processor marks a node LAUNCHED only after its publish
succeeded, so a broker error mid-tick leaves the rest READY, to be launched next tick.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from dyrygent.core.graph import TRANSITIONS, Graph, NodeState

__all__ = ["Outcome", "TickPlan", "apply_changes", "find_all", "in_flight", "plan_tick"]


class Outcome(enum.IntEnum):
    """What the processor saw of a LAUNCHED node this tick."""

    RUNNING = 0  # nothing new: keep waiting
    SUCCEEDED = 1
    FAILED = 2
    STARTED = 3  # started or retrying: record it, so a result that vanishes is noticed


@dataclass
class TickPlan:
    """What one tick should do.

    ``changes`` maps node index -> new state (outcomes seen, nodes that became READY);
    ``ready`` lists every READY node to launch, in index order; ``failed`` is the lowest failed
    node (the workflow is over); ``done`` is true when every node succeeded.
    """

    changes: dict[int, NodeState] = field(default_factory=dict)
    ready: list[int] = field(default_factory=list)
    failed: int | None = None
    done: bool = False


def find_all(states: bytes | bytearray, state: NodeState) -> list[int]:
    """Indices of the nodes in ``state``, ascending (bytes.find: fast on large graphs)."""
    out = []
    needle = bytes([state])
    find = states.find
    i = find(needle)
    while i != -1:
        out.append(i)
        i = find(needle, i + 1)
    return out


def in_flight(states: bytes | bytearray) -> list[int]:
    """Indices of the nodes whose outcome must be observed (LAUNCHED or RUNNING)."""
    return sorted(find_all(states, NodeState.LAUNCHED) + find_all(states, NodeState.RUNNING))


def _record(
    changes: dict[int, NodeState], states: bytes | bytearray, i: int, new: NodeState
) -> None:
    old = NodeState(changes.get(i, states[i]))
    if new not in TRANSITIONS[old]:
        raise ValueError(f"node {i}: illegal transition {old.name} -> {new.name}")
    changes[i] = new


def plan_tick(
    graph: Graph, states: bytes | bytearray, observations: Mapping[int, Outcome]
) -> TickPlan:
    """Plan a tick.

    ``states`` has one byte (a NodeState) per node. ``observations`` maps in-flight node
    indices (LAUNCHED or RUNNING) to what was seen; a node missing from it is unchanged.
    Once any node has failed nothing more is launched. A WAITING node becomes READY when
    all its parents succeeded; on the first tick (every node WAITING) the roots are ready.
    Raises ValueError on an observation that is not a legal transition.
    """
    if len(states) != len(graph):
        raise ValueError(f"state has {len(states)} entries for a graph of {len(graph)} nodes")
    plan = TickPlan()
    changes = plan.changes
    for i, outcome in observations.items():
        if outcome is Outcome.SUCCEEDED:
            _record(changes, states, i, NodeState.SUCCEEDED)
        elif outcome is Outcome.FAILED:
            _record(changes, states, i, NodeState.FAILED)
            if plan.failed is None or i < plan.failed:
                plan.failed = i
        elif outcome is Outcome.STARTED and states[i] == NodeState.LAUNCHED:
            _record(changes, states, i, NodeState.RUNNING)
    if plan.failed is None and NodeState.FAILED in states:
        plan.failed = states.index(NodeState.FAILED)
    if plan.failed is not None:
        return plan

    succeeded_now = [i for i, s in changes.items() if s is NodeState.SUCCEEDED]
    if not any(states):  # first tick: every node WAITING
        candidates = graph.roots()
    else:
        children = graph.children
        candidates = sorted({c for i in succeeded_now for c in children[i]})
    nodes = graph.nodes
    SUCCEEDED = NodeState.SUCCEEDED
    for c in candidates:
        if states[c] == NodeState.WAITING and all(
            changes.get(p, states[p]) == SUCCEEDED for p in nodes[c].parents
        ):
            _record(changes, states, c, NodeState.READY)
    plan.ready = sorted(
        find_all(states, NodeState.READY) + [i for i, s in changes.items() if s is NodeState.READY]
    )
    if not plan.ready:
        remaining = len(states) - states.count(SUCCEEDED)
        plan.done = remaining == len(succeeded_now)
    return plan


def apply_changes(states: bytearray, changes: Mapping[int, NodeState]) -> None:
    """Write ``changes`` into ``states`` in place."""
    for i, s in changes.items():
        states[i] = s
