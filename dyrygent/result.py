"""WorkflowResult: a workflow's result, its state, and the way to steer it, from any process.

``WorkflowResult(workflow_id, app=app)`` works without the handle ``apply_async`` returned:
node ids, labels and tasks come from the stored graph.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Union

from celery.result import AsyncResult
from vine import promise

from dyrygent import pictures
from dyrygent.core.graph import NodeState
from dyrygent.engine import steering, watching
from dyrygent.engine.drawing import stored_picture
from dyrygent.engine.stores import store_for
from dyrygent.info import HistoryEvent, Progress, WorkflowInfo

__all__ = ["WorkflowNode", "WorkflowResult"]


@dataclass(frozen=True)
class WorkflowNode:
    """A node of a workflow: its task id (``AsyncResult(node.id)`` works), task name and
    label (the task name unless one was given)."""

    id: str
    task: str
    label: str = ""


Dependency = Union[WorkflowNode, str]


class WorkflowResult(AsyncResult):
    """The workflow's own result: ``get()`` returns what the canvas would natively return,
    or raises the failed node's exception (TaskRevokedError once cancelled). ``id`` is the
    workflow id."""

    def __init__(
        self, id: str, app: Any = None, nodes: Sequence[WorkflowNode] | None = None
    ) -> None:
        super().__init__(id, app=app)
        self._nodes = None if nodes is None else list(nodes)

    @property
    def nodes(self) -> list[WorkflowNode]:
        """The workflow's nodes, in graph order (read from the store when not known)."""
        if self._nodes is None:
            loaded = watching.load_view(self.app, store_for(self.app), self.id)
            if loaded is None:
                return []
            self._nodes = [
                WorkflowNode(n.id, n.task, n.label or n.task) for n in loaded.graph.nodes
            ]
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
        if reopened:  # this handle saw the old outcome: forget it (other handles keep it)
            self._cache = None
            self.on_ready = promise(self._on_fulfilled, weak=True)
        return reopened

    resume = retry

    def to_dot(self, *, collapse: int = pictures.DEFAULT_COLLAPSE) -> str:
        """The graph in Graphviz's DOT, coloured by the live node states
        (:mod:`dyrygent.pictures`); raises PayloadError for an unknown workflow."""
        return pictures.to_dot(*stored_picture(self.app, self.id), collapse=collapse)

    def to_mermaid(self, *, collapse: int = pictures.DEFAULT_COLLAPSE) -> str:
        """The graph as a Mermaid flowchart, coloured by the live node states
        (:mod:`dyrygent.pictures`); raises PayloadError for an unknown workflow."""
        return pictures.to_mermaid(*stored_picture(self.app, self.id), collapse=collapse)

    def forget(self) -> None:
        """Delete the workflow's records and every node's result (and its own)."""
        steering.forget(self.app, self.id)
        self._cache = None


def list_workflows(app: Any, state: str | None = None, limit: int = 50) -> list[WorkflowInfo]:
    """Up to ``limit`` workflows stored for ``app``, newest first, optionally only those in
    ``state`` (RUNNING, SUCCESS, FAILURE, ERROR, CANCELLED); their ``nodes`` are empty."""
    return watching.list_workflows(app, state=state, limit=limit)
