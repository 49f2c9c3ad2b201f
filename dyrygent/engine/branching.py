"""Branch nodes: a task whose result names the direct children to follow.

A BRANCH node runs as any task. When a tick sees it succeed, its result (a child's label, or a
list of them; a child without a label is named by its task) says which children run; the
others are SKIPPED by the core (:func:`dyrygent.core.tick.plan_tick`), and skips propagate by
the descendants' start rules (a join after the branches uses ``none_failed_min_one_success``,
as in Airflow). A result that names no child fails the branch node: its stored result is
replaced by a :class:`~dyrygent.errors.BranchError` naming what it could have returned.
"""

from __future__ import annotations

from typing import Any

from celery import states as celery_states

from dyrygent.core.graph import Graph, NodeKind
from dyrygent.core.tick import Outcome
from dyrygent.engine.results import Observation
from dyrygent.errors import BranchError

__all__ = ["branch_choices", "chosen_names"]


def chosen_names(value: Any) -> list[str] | None:
    """The child names a branch's result chose (None: the result names none)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def branch_choices(backend: Any, graph: Graph, seen: Observation) -> dict[int, frozenset[str]]:
    """The children each BRANCH node seen succeeding chose, by name. A branch whose result
    names anything but its children is turned into a failure here (``seen`` is updated, and
    the node's stored result becomes a BranchError)."""
    if NodeKind.BRANCH not in graph.kinds:
        return {}
    choices: dict[int, frozenset[str]] = {}
    nodes = graph.nodes
    for i, outcome in seen.outcomes.items():
        node = nodes[i]
        if outcome is not Outcome.SUCCEEDED or node.kind is not NodeKind.BRANCH:
            continue
        valid = sorted({nodes[c].name for c in graph.children[i]})
        value = seen.metas[i].get("result")
        names = chosen_names(value)
        if names is not None and set(names) <= set(valid):
            choices[i] = frozenset(names)
            continue
        exc = BranchError(
            f"branch node {node.id} ({node.name}) returned {value!r:.200}: return the label of "
            f"one of its children, or a list of them: {', '.join(valid) or '(it has none)'}",
            node=node.id,
        )
        backend.mark_as_failure(node.id, exc)
        seen.outcomes[i] = Outcome.FAILED
        seen.metas[i] = {"status": celery_states.FAILURE, "result": exc}
    return choices
