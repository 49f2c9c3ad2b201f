"""The workflow's result handle, shaped like the native result of the canvas it was built from.

Natively ``canvas.apply_async()`` returns a tree: a chain's result is its last task's
``AsyncResult`` whose ``parent`` is the step before; a chord's is its body's, whose
``parent`` is the header's ``GroupResult``; a canvas ending in a group gives a
``GroupResult`` whose ``results`` are its members'. :func:`workflow_result` gives the same
shape, built from the nodes' own ids and the graph's output expression:

* a single-valued output gives a :class:`WorkflowResult` (an ``AsyncResult``);
* a list output gives a :class:`WorkflowGroupResult` (a ``GroupResult``), its ``results`` the
  nodes' ``AsyncResult`` (nested lists are nested ``GroupResult``);
* a node's ``parent`` is what it waited for: one dependency's result, or a ``GroupResult``
  of several (a chord body's header); it is built when first read, so a chain of 10,000
  steps costs nothing until walked.

Either handle's id is the workflow id, and its ``get()`` returns the workflow's result: what
the canvas returns natively, or the failed node's exception. Nested groups and parents that
are groups have ids derived from the workflow id (dyrygent does not store groups).
"""

from __future__ import annotations

import uuid as _uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

from celery.result import AsyncResult, GroupResult

from dyrygent.core.graph import Expr, Graph, NodeState
from dyrygent.engine.store import store_for

__all__ = ["WorkflowGroupResult", "WorkflowNode", "WorkflowResult", "workflow_result"]

_UNSET: Any = object()
_NONE: Any = object()  # a parent known to be None (None itself means "not set")


@dataclass(frozen=True)
class WorkflowNode:
    """A node of a workflow: its task id (``AsyncResult(node.id)`` works) and task name."""

    id: str
    task: str


Dependency = Union[WorkflowNode, str]


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

    def group(self, results: list, leaves: list[int], key: str) -> TreeGroupResult:
        """A GroupResult of ``results``; its parent is what all its ``leaves`` waited for,
        and natively its members do not repeat that parent as their own."""
        deps = self.common_deps(leaves)
        for r in results:
            if deps and isinstance(r, NodeResult) and set(self.parents[r.index]) == set(deps):
                r.parent = _NONE
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
        self._parent = _UNSET
        super().__init__(id, app=tree.app)

    @property  # type: ignore[override]
    def parent(self) -> Any:
        if self._parent is _UNSET:
            self._parent = self._tree.result_of(self._tree.parents[self.index])
        return None if self._parent is _NONE else self._parent

    @parent.setter
    def parent(self, value: Any) -> None:
        if value is not None:  # AsyncResult.__init__ sets None: keep it lazy
            self._parent = value


class TreeGroupResult(GroupResult):
    """A GroupResult whose ``parent`` (the nodes ``deps``) is built when first read."""

    def __init__(self, id: str, results: list, tree: ResultTree, deps: list[int]) -> None:
        self._tree = tree
        self._deps = deps
        self._parent = _UNSET
        super().__init__(id, results, app=tree.app)

    @property  # type: ignore[override]
    def parent(self) -> Any:
        if self._parent is _UNSET:
            self._parent = self._tree.result_of(self._deps)
        return self._parent

    @parent.setter
    def parent(self, value: Any) -> None:
        if value is not None:
            self._parent = value


class _Workflow:
    """What both handles add: the nodes, one node's result, the processor's node states."""

    nodes: list[WorkflowNode]
    _tree: ResultTree
    app: Any
    id: str

    def node(self, node: Dependency) -> AsyncResult:
        """The AsyncResult of one node."""
        return AsyncResult(node.id if isinstance(node, WorkflowNode) else node, app=self.app)

    def states(self) -> dict[str, str]:
        """Each node's state as the processor last recorded it (WAITING, READY, LAUNCHED,
        SUCCEEDED, FAILED), by node id, in graph order; one read of the store."""
        raw = store_for(self.app).status(self.id).get("states") or b""
        return {
            n.id: NodeState(raw[i]).name if i < len(raw) else "UNKNOWN"
            for i, n in enumerate(self.nodes)
        }


class WorkflowResult(_Workflow, AsyncResult):
    """The workflow's own result: ``get()`` returns what the canvas would natively return,
    or raises the failed node's exception. ``id`` is the workflow id; ``parent`` and
    ``children`` are those of the node the canvas ends in, as natively."""

    def __init__(
        self,
        id: str,
        app: Any = None,
        nodes: Sequence[WorkflowNode] = (),
        tree: ResultTree | None = None,
    ) -> None:
        self._tree = tree or ResultTree(id, app, None)
        self._parent = _UNSET
        super().__init__(id, app=app)
        self.nodes = list(nodes)

    @property  # type: ignore[override]
    def parent(self) -> Any:
        if self._parent is _UNSET:
            leaves = self._tree.leaves(self._tree.output)
            self._parent = self._tree.result_of(self._tree.common_deps(leaves))
        return self._parent

    @parent.setter
    def parent(self, value: Any) -> None:
        if value is not None:
            self._parent = value

    @property
    def children(self) -> Any:
        """The children of the node the canvas ends in (tasks it replaced itself with...)."""
        out = self._tree.output
        if isinstance(out, int):
            return self._tree.node(out).children
        return super().children


class WorkflowGroupResult(_Workflow, GroupResult):
    """The result of a workflow whose canvas ends in a group: a GroupResult of the nodes'
    results (``results``, ``len()``, ``save()``/``restore()``, ``as_tuple()`` work as
    natively), whose ``get()`` and ``ready()`` are the workflow's: a failed node makes it
    ready and ``get()`` raise, though the nodes after it never run."""

    def __init__(self, id: str, app: Any, nodes: Sequence[WorkflowNode], tree: ResultTree):
        members = tree.build(tree.output)
        super().__init__(id, list(members.results), parent=members.parent, app=app)
        self._tree = tree
        self.nodes = list(nodes)

    @property
    def _own(self) -> AsyncResult:
        return AsyncResult(self.id, app=self.app)

    def get(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """The workflow's result (AsyncResult.get's arguments)."""
        return self._own.get(*args, **kwargs)

    def ready(self) -> bool:
        """Whether the workflow has ended (succeeded or failed)."""
        return bool(self._own.ready())

    @property
    def state(self) -> str:
        """The workflow's state (PENDING until it ends, then SUCCESS or FAILURE)."""
        return str(self._own.state)


def workflow_result(
    workflow_id: str, app: Any, nodes: Sequence[WorkflowNode], graph: Graph
) -> WorkflowResult | WorkflowGroupResult:
    """The handle for a started workflow, shaped like the native result of its canvas."""
    tree = ResultTree(workflow_id, app, graph)
    if isinstance(graph.output, list):
        return WorkflowGroupResult(workflow_id, app, nodes, tree)
    return WorkflowResult(workflow_id, app=app, nodes=nodes, tree=tree)
