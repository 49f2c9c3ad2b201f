"""Starting a workflow some of whose nodes do not start WAITING: nodes skipped before the
start (``skip_tasks``), or, for an adopted celery-dyrygent workflow, nodes that already
finished or are running.

The start protocol is :meth:`dyrygent.engine.processor.Processor.start`'s, with one step
more: between storing the graph and publishing the driver, the starting process claims the
workflow and commits the initial states, settled as a tick would settle them (children of
finished nodes made READY or UPSTREAM_FAILED, the outcome stored if it is already decided).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from celery.utils import uuid

from dyrygent.compat.extras import Extras, encode_with_extras
from dyrygent.compat.processor import CompatProcessor
from dyrygent.core.codec import encode_graph
from dyrygent.core.graph import Graph
from dyrygent.core.states import NodeState, WorkflowStatus
from dyrygent.core.tick import Outcome, plan_tick
from dyrygent.engine.loading import Loaded
from dyrygent.engine.processor import Processor
from dyrygent.engine.spec import Header
from dyrygent.engine.stores import ClaimStatus
from dyrygent.engine.trust import seal
from dyrygent.engine.wake import END, join_counters
from dyrygent.errors import LimitExceededError, WorkflowError

__all__ = ["initial_states", "start_with"]

_OBSERVED = {NodeState.SUCCEEDED: Outcome.SUCCEEDED, NodeState.FAILED: Outcome.FAILED}


def initial_states(graph: Graph, given: Mapping[int, NodeState]) -> tuple[bytearray, Any]:
    """The states a workflow starts in, and the plan that settled them: ``given`` maps node
    indices to SUCCEEDED, FAILED or LAUNCHED (running), the rest start WAITING and are
    decided by their start rules, as the tick that saw the given outcomes would.

    Raises ValueError for another state."""
    states = bytearray(len(graph))
    observations: dict[int, Outcome] = {}
    for i, state in given.items():
        if state not in (NodeState.SUCCEEDED, NodeState.FAILED, NodeState.LAUNCHED):
            raise ValueError(f"node {graph.nodes[i].id}: cannot start {state.name}")
        states[i] = NodeState.LAUNCHED
        if state in _OBSERVED:
            observations[i] = _OBSERVED[state]
    plan = plan_tick(graph, states, observations)
    for i, s in plan.changes.items():
        states[i] = s
    return states, plan


def start_with(
    processor: Processor,
    wf: str,
    graph: Graph,
    header: Header,
    extras: Extras,
    max_age: int,
    max_bytes: int,
    given: Mapping[int, NodeState] | None = None,
    started: Callable[[], None] | None = None,
) -> None:
    """Check, store and start ``wf`` with ``extras`` in its header and the ``given`` node
    states (see :func:`initial_states`); ``started()`` is called once it is stored, before
    its first tick, which runs in this process.

    Raises PayloadError (nothing stored) for a workflow the workers would refuse,
    LimitExceededError when the graph encodes to more than ``max_bytes``, WorkflowError
    when the new workflow could not be claimed (someone else is driving it already).
    """
    loaded = Loaded(graph, header)
    processor.loader.check(wf, loaded)
    data = encode_graph(graph)
    if len(data) > max_bytes:
        raise LimitExceededError(
            f"the workflow's graph encodes to {len(data)} bytes, over max_bytes={max_bytes}: "
            f"pass smaller arguments, split the workflow, or raise Workflow(max_bytes=...)",
            limit="max_bytes",
        )
    store = processor.store
    joins = join_counters(graph)
    states, plan = initial_states(graph, given or {})
    for i, s in enumerate(states):
        if s in (NodeState.SUCCEEDED, NodeState.FAILED):  # as if they had ended already
            for c in graph.children[i] or [END]:
                if c in joins:
                    joins[c] -= 1
    sealed = seal(processor.app, data, encode_with_extras(header, extras))
    store.create(wf, data, sealed, len(graph), max_age, joins=joins)
    if isinstance(processor, CompatProcessor):
        processor.remember_extras(wf, dict(extras))
    if started is not None:
        started()
    if given:
        token = f"start-{uuid()}"
        claim = store.claim(wf, 0, token, False, processor.timing.lease)
        if claim.status is not ClaimStatus.OK:
            raise WorkflowError(f"workflow {wf}: could not claim it to start it ({claim.status})")
        changes = {i: s for i, s in enumerate(states) if s != NodeState.WAITING}
        if plan.verdict.status is not None:
            processor.finisher.decide(wf, graph, states, plan.verdict, {}, {})
        status = plan.verdict.status if plan.done else WorkflowStatus.RUNNING
        store.commit(wf, token, changes, 0, status or WorkflowStatus.FAILED)
        if plan.done:
            return
    processor.publish_tick(wf, header.processor_options, 0, processor.timing.max_interval)
    processor.tick_here(wf, f"client-{uuid()}", gen=0, loaded=loaded)
