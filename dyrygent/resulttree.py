"""The result tree: native-shaped results built from a workflow's nodes and output.

Natively ``canvas.apply_async()`` returns a tree: a chain's result is its last task's
``AsyncResult`` whose ``parent`` is the step before; a chord's is its body's, whose
``parent`` is the header's ``GroupResult``; a canvas ending in a group gives a
``GroupResult`` whose ``results`` are its members'. :class:`ResultTree` builds the same
shape from the nodes' own ids and the graph's output expression; a node's ``parent`` is
what it waited for (one dependency's result, or a ``GroupResult`` of several), built when
first read, so a chain of 10,000 steps costs nothing until walked. Groups dyrygent does not
store (nested ones, parents that are groups) get ids derived from the workflow id.
"""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Sequence
from typing import Any

from celery.result import AsyncResult, GroupResult

from dyrygent.core.graph import Expr, Graph

__all__ = ["NONE", "UNSET", "NodeResult", "ResultTree", "TreeGroupResult"]

#: A lazy attribute not computed yet.
UNSET: Any = object()
#: A parent known to be None (None itself means "not set").
NONE: Any = object()


class ResultTree:
    """The nodes' ids and dependencies, from which results and parents are built."""

    def __init__(self, workflow_id: str, app: Any, graph: Graph | None) -> None:
        self.workflow_id = workflow_id
        self.app = app
        nodes = graph.nodes if graph is not None else ()
        self.ids = [n.id for n in nodes]
        self.parents = [n.parents for n in nodes]
        self.output: Expr = graph.output if graph is not None else None

    def group_id(self, key: str) -> str:
        """A stable id for a group the workflow does not store (nested, or a parent)."""
        return str(_uuid.uuid5(_uuid.NAMESPACE_URL, f"dyrygent:{self.workflow_id}:{key}"))

    def node(self, index: int) -> NodeResult:
        return NodeResult(self.ids[index], self, index)

    def build(self, expr: Expr, key: str = "output") -> Any:
        """The native-shaped result of an output expression."""
        if isinstance(expr, list):
            results = [self.build(item, f"{key}.{k}") for k, item in enumerate(expr)]
            return self.group(results, self.leaves(expr), key)
        if expr is None:
            return None
        return self.node(expr)  # type: ignore[arg-type]

    def group(self, results: list[Any], leaves: list[int], key: str) -> TreeGroupResult:
        """A GroupResult of ``results``; its parent is what all its ``leaves`` waited for,
        and natively its members do not repeat that parent as their own."""
        deps = self.common_deps(leaves)
        for r in results:
            if deps and isinstance(r, NodeResult) and set(self.parents[r.index]) == set(deps):
                r.parent = NONE
        return TreeGroupResult(self.group_id(key), results, self, deps)

    def common_deps(self, indices: Sequence[int]) -> list[int]:
        """The dependencies all the nodes ``indices`` share, in the first one's order."""
        if not indices:
            return []
        common = set(self.parents[indices[0]])
        for i in indices[1:]:
            common &= set(self.parents[i])
        return [p for p in self.parents[indices[0]] if p in common]

    def result_of(self, deps: Sequence[int]) -> Any:
        """The result standing for the nodes ``deps``: None, a node's, or a group's."""
        if not deps:
            return None
        if len(deps) == 1:
            return self.node(deps[0])
        key = "deps:" + ",".join(map(str, deps))
        return self.group([self.node(d) for d in deps], list(deps), key)

    def leaves(self, expr: Expr) -> list[int]:
        if isinstance(expr, list):
            return [i for item in expr for i in self.leaves(item)]
        return [] if expr is None else [expr]  # type: ignore[list-item]


class NodeResult(AsyncResult):
    """A node's AsyncResult whose ``parent`` is built from the graph when first read."""

    def __init__(self, id: str, tree: ResultTree, index: int) -> None:
        self._tree = tree
        self.index = index
        self._parent = UNSET
        super().__init__(id, app=tree.app)

    @property
    def parent(self) -> Any:
        if self._parent is UNSET:
            self._parent = self._tree.result_of(self._tree.parents[self.index])
        return None if self._parent is NONE else self._parent

    @parent.setter
    def parent(self, value: Any) -> None:
        if value is not None:  # AsyncResult.__init__ sets None: keep it lazy
            self._parent = value


class TreeGroupResult(GroupResult):
    """A GroupResult whose ``parent`` (the nodes ``deps``) is built when first read."""

    def __init__(self, id: str, results: list[Any], tree: ResultTree, deps: list[int]) -> None:
        self._tree = tree
        self._deps = deps
        self._parent = UNSET
        super().__init__(id, results, app=tree.app)

    @property
    def parent(self) -> Any:
        if self._parent is UNSET:
            self._parent = self._tree.result_of(self._deps)
        return self._parent

    @parent.setter
    def parent(self, value: Any) -> None:
        if value is not None:
            self._parent = value
