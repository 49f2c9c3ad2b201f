"""Running a workflow now, in this process: ``Workflow.apply()``, and ``apply_async()`` under
``task_always_eager`` (as Celery runs a canvas's ``apply()``).

The same plan as the processor's (:func:`dyrygent.core.tick.plan_tick`) and the same call
building as its launcher (:func:`dyrygent.engine.nodes.node_call`): each round runs every
READY node with ``Task.apply`` (in index order, so in dependency order), then the next tick
observes their outcomes. No broker, no result backend and no processor are used; nothing is
stored. A failed node does not raise at once: its exception is the workflow's, and ``get()``
raises it, as a native ``EagerResult.get()`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from celery import states as celery_states
from celery.result import EagerResult

from dyrygent.core.graph import Graph, evaluate, index_refs
from dyrygent.core.states import NodeState, WorkflowStatus
from dyrygent.core.tick import Outcome, apply_changes, plan_tick
from dyrygent.engine.nodes import node_call
from dyrygent.engine.spec import Header
from dyrygent.errors import ConfigurationError, WorkflowError
from dyrygent.info import WorkflowInfo, describe

__all__ = ["EagerWorkflowResult", "check_tasks", "run_eager"]


class _Named(Protocol):
    id: str


class EagerWorkflowResult(EagerResult):
    """The result of a workflow run in process: ``get()`` returns what the canvas's
    ``apply().get()`` returns, or raises the failed node's exception (``propagate=False``:
    returns it). ``node(n)`` is one node's own EagerResult; ``states()`` each node's final
    state; ``info()`` the workflow's record, as a store would give it."""

    def __init__(
        self,
        id: str,
        ret_value: Any,
        state: str,
        *,
        status: WorkflowStatus,
        graph: Graph,
        node_states: bytes,
        node_results: dict[str, EagerResult],
        nodes: Sequence[Any] = (),
        traceback: str | None = None,
    ) -> None:
        super().__init__(id, ret_value, state, traceback=traceback)
        self.nodes = list(nodes)
        self.workflow_status = status
        self._graph = graph
        self._states = bytes(node_states)
        self._node_results = node_results

    def node(self, node: _Named | str) -> EagerResult:
        """The EagerResult of one node (PENDING for a node that never ran).

        Raises KeyError naming the node if it is not in this workflow."""
        node_id = node if isinstance(node, str) else node.id
        if node_id not in self._graph.index:
            raise KeyError(f"node {node_id!r} is not in workflow {self.id}")
        found = self._node_results.get(node_id)
        return found if found is not None else EagerResult(node_id, None, celery_states.PENDING)

    @property
    def node_results(self) -> dict[str, EagerResult]:
        """The EagerResult of every node that ran, by node id, in the order they ran."""
        return dict(self._node_results)

    def states(self) -> dict[str, str]:
        """Each node's final state name, by node id, in graph order."""
        return {n.id: NodeState(s).name for n, s in zip(self._graph.nodes, self._states)}

    def info(self) -> WorkflowInfo:
        """The workflow and its nodes, as ``WorkflowResult.info()`` gives them (no times:
        nothing was stored)."""
        return describe(self.id, self.workflow_status, None, None, bytes(self._states), self._graph)


def check_tasks(app: Any, graph: Graph) -> None:
    """Raise ConfigurationError naming the first node whose task ``app`` does not know."""
    for node in graph.nodes:
        if node.task not in app.tasks:
            raise ConfigurationError(
                f"node {node.id} ({node.task}): task {node.task!r} is not registered on app "
                f"{app.main!r}: import the module that defines it before apply()"
            )


def run_eager(
    app: Any, wf: str, graph: Graph, header: Header, nodes: Sequence[Any] = ()
) -> EagerWorkflowResult:
    """Run ``graph`` to its end in this process, tick by tick as the processor would.

    Every node runs with ``app.tasks[name].apply(args, kwargs, task_id=node.id, **options)``
    with the arguments the processor would publish. Raises ConfigurationError, before running
    anything, if a node's task is not registered on ``app``; with ``task_eager_propagates``
    set, raises the failed node's exception once the run has ended.
    """
    check_tasks(app, graph)
    states = bytearray(len(graph))
    results: dict[int, Any] = {}
    ran: dict[str, EagerResult] = {}
    observations: dict[int, Outcome] = {}
    while True:
        plan = plan_tick(graph, bytes(states), observations, fail_fast=header.fail_fast)
        apply_changes(states, plan.changes)
        if plan.done:
            break
        if not plan.ready:  # nothing in flight and nothing ready: the plan would never end
            raise WorkflowError(f"workflow {wf}: no node can run and the workflow has not ended")
        observations = {}
        for i in plan.ready:
            node = graph.nodes[i]
            for r in index_refs(node.input):
                results.setdefault(r, None)  # a failed or skipped parent gives None (ticking)
            args, kwargs, options = node_call(node, results, header.node_options)
            options.pop("task_id", None)
            outcome = app.tasks[node.task].apply(
                args, kwargs, task_id=node.id, throw=False, **options
            )
            states[i] = NodeState.LAUNCHED
            ran[node.id] = outcome
            if outcome.successful():
                results[i] = outcome.result
                observations[i] = Outcome.SUCCEEDED
            else:
                observations[i] = Outcome.FAILED
    result = _finish(wf, graph, bytes(states), plan.verdict, results, ran, nodes)
    if result.failed() and app.conf.task_eager_propagates:
        raise result.result  # as a native eager canvas raises from apply() then
    return result


def _finish(
    wf: str,
    graph: Graph,
    states: bytes,
    verdict: Any,
    results: dict[int, Any],
    ran: dict[str, EagerResult],
    nodes: Sequence[Any],
) -> EagerWorkflowResult:
    """The workflow's result from its verdict, as Finisher.decide stores it."""
    common: dict[str, Any] = {
        "graph": graph,
        "node_states": states,
        "node_results": ran,
        "nodes": nodes,
    }
    if verdict.status is WorkflowStatus.SUCCEEDED:
        values = {r: results.get(r) for r in index_refs(graph.output)}  # skipped: None
        value = evaluate(graph.output, values)
        return EagerWorkflowResult(
            wf, value, celery_states.SUCCESS, status=WorkflowStatus.SUCCEEDED, **common
        )
    traceback = None
    if verdict.culprit is None:
        exc: BaseException = WorkflowError(
            f"workflow {wf} failed: a leaf was cancelled or upstream-failed without a "
            f"failed node of its own"
        )
    else:
        failed = ran[graph.nodes[verdict.culprit].id]
        exc, traceback = failed.result, failed.traceback
    return EagerWorkflowResult(
        wf,
        exc,
        celery_states.FAILURE,
        status=WorkflowStatus.FAILED,
        traceback=traceback,
        **common,
    )
