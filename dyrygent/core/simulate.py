"""A dry run: the waves in which a workflow's nodes would run if every one succeeded.

Pure: it drives :func:`~dyrygent.core.tick.plan_tick` as the processor would, with each
launched node seen succeeding at the next tick.
"""

from __future__ import annotations

from dyrygent.core.graph import Graph
from dyrygent.core.states import NodeState
from dyrygent.core.tick import Outcome, apply_changes, plan_tick

__all__ = ["simulate"]


def simulate(graph: Graph, states: bytes | None = None) -> list[list[int]]:
    """The node indices launched by each tick, in order, every launched node succeeding;
    ``states`` are the starting states (default all WAITING; e.g. skipped nodes SUCCEEDED).
    Raises ValueError if ``states`` does not fit the graph."""
    current = bytearray(states if states is not None else bytes(len(graph)))
    waves: list[list[int]] = []
    plan = plan_tick(graph, current, {})
    while True:
        apply_changes(current, plan.changes)
        if not plan.ready:
            return waves
        waves.append(list(plan.ready))
        for i in plan.ready:
            current[i] = NodeState.LAUNCHED
        plan = plan_tick(graph, current, {i: Outcome.SUCCEEDED for i in plan.ready})
