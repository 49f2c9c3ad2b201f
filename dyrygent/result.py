"""The workflow's result handle: its value, its state, the way to steer it, from any process,
shaped like the native result of the canvas it was built from.

``WorkflowResult(workflow_id, app=app)`` works without the handle ``apply_async`` returned:
node ids, labels and tasks come from the stored graph. :func:`workflow_result` gives the
handle ``apply_async`` returns:

* a single-valued output gives a :class:`WorkflowResult` (an ``AsyncResult``) whose
  ``parent`` and ``children`` are those of the node the canvas ends in, as natively;
* a list output gives a :class:`WorkflowGroupResult` (a ``GroupResult``): its ``results`` are
  the nodes' ``AsyncResult`` (nested lists are nested ``GroupResult``), ``len()``,
  ``save()``/``restore()`` and ``as_tuple()`` work as natively (see
  :mod:`dyrygent.resulttree`).

Either handle's id is the workflow id, and its ``get()`` returns the workflow's result: what
the canvas returns natively, or the failed node's exception (TaskRevokedError once
cancelled).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Union

from celery.result import AsyncResult, GroupResult
from vine import promise

from dyrygent import pictures
from dyrygent.core.graph import Graph, NodeState
from dyrygent.engine import steering, watching
from dyrygent.engine.drawing import stored_picture
from dyrygent.engine.stores import store_for
from dyrygent.info import HistoryEvent, Progress, WorkflowInfo
from dyrygent.resulttree import UNSET, ResultTree

__all__ = [
    "WorkflowGroupResult",
    "WorkflowNode",
    "WorkflowResult",
    "list_workflows",
    "workflow_result",
]


@dataclass(frozen=True)
class WorkflowNode:
    """A node of a workflow: its task id (``AsyncResult(node.id)`` works), task name and
    label (the task name unless one was given)."""

    id: str
    task: str
    label: str = ""


Dependency = Union[WorkflowNode, str]


class _Handle:
    """What both handles add to Celery's results: the nodes, their states, watching and
    steering the workflow."""

    id: str
    app: Any
    _nodes: list[WorkflowNode] | None
    _tree: ResultTree | None

    def _stored_graph(self) -> Graph | None:
        loaded = watching.load_view(self.app, store_for(self.app), self.id)
        return None if loaded is None else loaded.graph

    @property
    def tree(self) -> ResultTree:
        """The result tree of the workflow's nodes (read from the store when not known)."""
        if self._tree is None:
            self._tree = ResultTree(self.id, self.app, self._stored_graph())
        return self._tree

    @property
    def nodes(self) -> list[WorkflowNode]:
        """The workflow's nodes, in graph order (read from the store when not known)."""
        if self._nodes is None:
            graph = self._stored_graph()
            if graph is None:
                return []
            self._nodes = [WorkflowNode(n.id, n.task, n.label or n.task) for n in graph.nodes]
        return list(self._nodes)

    @nodes.setter
    def nodes(self, value: Sequence[WorkflowNode]) -> None:
        self._nodes = list(value)

    def node(self, node: Dependency) -> AsyncResult:
        """The AsyncResult of one node."""
        return AsyncResult(node.id if isinstance(node, WorkflowNode) else node, app=self.app)

    def states(self) -> dict[str, str]:
        """Each node's state as the processor last recorded it (a NodeState name), by node
        id, in graph order; one read of the store."""
        raw = store_for(self.app).status(self.id).states
        return {
            n.id: NodeState(raw[i]).name if i < len(raw) else "UNKNOWN"
            for i, n in enumerate(self.nodes)
        }

    # -- watching -------------------------------------------------------------------------

    def info(self) -> WorkflowInfo:
        """The workflow and its nodes as stored now (state PENDING if not known yet): one
        store round trip for the record and events, one for the graph (cached), one batched
        read of the failed nodes' errors."""
        return watching.workflow_info(self.app, self.id)

    def progress(self) -> Progress:
        """Settled nodes of all; one read of the state bytes."""
        return watching.workflow_progress(self.app, self.id)

    def history(self) -> list[HistoryEvent]:
        """Every node state change, in commit order, with store times."""
        return watching.workflow_history(self.app, self.id)

    def to_dot(self, *, collapse: int = pictures.DEFAULT_COLLAPSE) -> str:
        """The graph in Graphviz's DOT, coloured by the live node states
        (:mod:`dyrygent.pictures`); raises PayloadError for an unknown workflow."""
        return pictures.to_dot(*stored_picture(self.app, self.id), collapse=collapse)

    def to_mermaid(self, *, collapse: int = pictures.DEFAULT_COLLAPSE) -> str:
        """The graph as a Mermaid flowchart, coloured by the live node states
        (:mod:`dyrygent.pictures`); raises PayloadError for an unknown workflow."""
        return pictures.to_mermaid(*stored_picture(self.app, self.id), collapse=collapse)

    # -- steering -------------------------------------------------------------------------

    def cancel(self, terminate: bool = False) -> bool:
        """Cancel the workflow: no node is launched after this returns; launched and
        running nodes are revoked (``terminate``: kill those running, as
        ``app.control.revoke``); ``get()`` raises TaskRevokedError. False (and logged) if
        it had already ended. Raises SteeringError if a tick held it too long."""
        return steering.cancel(self.app, self.id, terminate=terminate)

    def revoke(
        self,
        connection: Any = None,
        terminate: bool = False,
        signal: Any = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> bool:
        """:meth:`cancel` (the workflow id is no task a worker could revoke)."""
        return self.cancel(terminate=terminate)

    def retry(self, nodes: Iterable[str] | None = None) -> bool:
        """Run again what failed (FAILURE, ERROR or CANCELLED workflows), or ``nodes`` (ids
        or labels) and their descendants, under the same id; succeeded nodes keep their
        results. ``get()`` then waits for the new result (on this handle; another handle
        that already returned the old outcome keeps it: make a new WorkflowResult). False if
        nothing was to rerun.
        Raises SteeringError (nothing changed) if it runs, or a result it needs expired."""
        reopened = steering.retry(self.app, self.id, None if nodes is None else list(nodes))
        if reopened:
            self._forget_outcome()
        return reopened

    resume = retry

    def forget(self) -> None:
        """Delete the workflow's records and every node's result (and its own)."""
        steering.forget(self.app, self.id)
        self._forget_outcome()

    def _forget_outcome(self) -> None:
        """This handle saw the old outcome: forget it (other handles keep theirs)."""


class WorkflowResult(_Handle, AsyncResult):
    """The workflow's own result: ``get()`` returns what the canvas would natively return,
    or raises the failed node's exception (TaskRevokedError once cancelled). ``id`` is the
    workflow id; ``parent`` and ``children`` are those of the node the canvas ends in."""

    def __init__(
        self,
        id: str,
        app: Any = None,
        nodes: Sequence[WorkflowNode] | None = None,
        tree: ResultTree | None = None,
    ) -> None:
        self._tree = tree
        self._parent = UNSET
        super().__init__(id, app=app)
        self._nodes = None if nodes is None else list(nodes)

    def _forget_outcome(self) -> None:
        self._cache = None
        self.on_ready = promise(self._on_fulfilled, weak=True)

    def get(self, *args: Any, follow_parents: bool = False, **kwargs: Any) -> Any:
        """The workflow's result (AsyncResult.get's arguments). Parents are not followed by
        default: the workflow's own result already carries the failure that decided it,
        while a parent node's meta may be one the processor acts on (a lost worker it
        relaunches, a revoke after a deadline)."""
        return super().get(*args, follow_parents=follow_parents, **kwargs)

    @property
    def parent(self) -> Any:
        if self._parent is UNSET:
            tree = self.tree
            self._parent = tree.result_of(tree.common_deps(tree.leaves(tree.output)))
        return self._parent

    @parent.setter
    def parent(self, value: Any) -> None:
        if value is not None:  # AsyncResult.__init__ sets None: keep it lazy
            self._parent = value

    @property
    def children(self) -> Any:
        """The children of the node the canvas ends in (the tasks it replaced itself
        with...)."""
        out = self.tree.output
        if isinstance(out, int):
            return self.tree.node(out).children
        return super().children


class WorkflowGroupResult(_Handle, GroupResult):
    """The result of a workflow whose canvas ends in a group: a GroupResult of the nodes'
    results (``results``, ``len()``, ``save()``/``restore()``, ``as_tuple()`` work as
    natively), whose ``get()``, ``ready()`` and ``state`` are the workflow's: a failed node
    makes it ready and ``get()`` raise, though the nodes after it never run."""

    def __init__(self, id: str, app: Any, nodes: Sequence[WorkflowNode], tree: ResultTree):
        members = tree.build(tree.output)
        super().__init__(id, list(members.results), parent=members.parent, app=app)
        self._tree = tree
        self._nodes = list(nodes)

    @property
    def _own(self) -> AsyncResult:
        return AsyncResult(self.id, app=self.app)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        """The workflow's result (AsyncResult.get's arguments)."""
        return self._own.get(*args, **kwargs)

    def ready(self) -> bool:
        """Whether the workflow's outcome is decided (succeeded or failed)."""
        return bool(self._own.ready())

    @property
    def state(self) -> str:
        """The workflow's state (PENDING until decided, then SUCCESS or FAILURE)."""
        return str(self._own.state)


def workflow_result(
    workflow_id: str, app: Any, nodes: Sequence[WorkflowNode], graph: Graph
) -> WorkflowResult | WorkflowGroupResult:
    """The handle for a started workflow, shaped like the native result of its canvas."""
    tree = ResultTree(workflow_id, app, graph)
    if isinstance(graph.output, list):
        return WorkflowGroupResult(workflow_id, app, nodes, tree)
    return WorkflowResult(workflow_id, app=app, nodes=nodes, tree=tree)


def list_workflows(app: Any, state: str | None = None, limit: int = 50) -> list[WorkflowInfo]:
    """Up to ``limit`` workflows stored for ``app``, newest first, optionally only those in
    ``state`` (RUNNING, SUCCESS, FAILURE, ERROR, CANCELLED); their ``nodes`` are empty."""
    return watching.list_workflows(app, state=state, limit=limit)
