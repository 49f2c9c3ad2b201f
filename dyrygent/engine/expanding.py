"""Run-time fan-out: expanding EXPAND nodes, and ending them when their items are done.

When an EXPAND node is READY, the tick converts its canvas once per item of its input (the
parent's result) into a segment of new nodes (:mod:`dyrygent.core.segments`), stores the
segment (sealed, once: a re-tick finds it and does not expand again), marks the EXPAND node
LAUNCHED and the new roots READY, to be published in the same tick. Node ids are derived from
the EXPAND node's id and the node's place in the segment, so they are the same every time.

An EXPAND node is no Celery task: the processor writes its result under its id when every
node of its segment is settled (the list of the items' results, in item order), or its
failure (the first failed item's error), and the tick observes that as any node's outcome.
"""

from __future__ import annotations

import copy
import dataclasses
import uuid
from typing import TYPE_CHECKING, Any

from celery import states as celery_states
from celery.canvas import maybe_signature

from dyrygent.core.builder import GraphBuilder
from dyrygent.core.graph import Graph, NodeKind, evaluate, index_refs
from dyrygent.core.outcome import culprit, unfinished
from dyrygent.core.segments import Segment, encode_segment, extend_graph
from dyrygent.core.states import IN_FLIGHT_STATES, NodeState
from dyrygent.core.tick import Outcome
from dyrygent.dynamic import EXPAND_TASK
from dyrygent.engine.canvas import CanvasConverter
from dyrygent.engine.loading import Loaded
from dyrygent.engine.nodes import HoldLost, fetch_results
from dyrygent.engine.results import Observation, exception_of, read_metas
from dyrygent.engine.spec import decode_spec, encode_spec, spec_extras
from dyrygent.engine.trust import seal_segment
from dyrygent.engine.wake import expansion_counter
from dyrygent.errors import DyrygentError, ExpandError

if TYPE_CHECKING:
    from dyrygent.engine.processor import Processor

__all__ = ["complete_expansions", "expand_ready", "expansions_pending"]

_NAMESPACE = uuid.UUID("5b0f3a52-8f7e-4f4e-9c3e-6d2f1d0a7e11")


def _one_task(proc: Processor, graph: Graph, k: int, template: Any, items: list[Any]) -> Segment:
    """The expansion of a single task over ``items``: its call converted once, then one
    node per item with the item prepended (unless the signature is immutable)."""
    node = graph.nodes[k]
    builder = GraphBuilder()
    CanvasConverter(builder, encode_spec, app=proc.app).convert(
        maybe_signature(copy.deepcopy(template), app=proc.app), None, ()
    )
    (one,) = builder.freeze().nodes
    args, kwargs, options = decode_spec(one.spec)
    extras = spec_extras(one.spec) or None
    prepend = not template.get("immutable")
    nodes = []
    for j, item in enumerate(items):
        node_id = str(uuid.uuid5(_NAMESPACE, f"{node.id}/{j}"))
        call = [item, *args] if prepend else args
        spec = encode_spec(node_id, one.task, call, kwargs, options, extras)
        nodes.append(dataclasses.replace(one, id=node_id, spec=spec))
    return Segment(
        len(graph),
        k,
        Graph(nodes, list(range(len(nodes)))),
        (node.parents,) * len(nodes),
        list(range(len(nodes))),
    )


def _segment(proc: Processor, graph: Graph, k: int, items: list[Any]) -> Segment:
    """The nodes of node ``k``'s expansion over ``items``."""
    node = graph.nodes[k]
    template = spec_extras(node.spec)["template"]
    if not template.get("subtask_type") and template.get("task") != EXPAND_TASK:
        return _one_task(proc, graph, k, template, items)  # the common case, made fast
    builder = GraphBuilder()
    converter = CanvasConverter(builder, encode_spec, app=proc.app)
    outs = []
    for item in items:
        # fresh objects for every item: freezing a signature writes into its options
        canvas = maybe_signature(copy.deepcopy(template), app=proc.app)
        out, _ = converter.convert(canvas, None, (), pre_args=(item,))
        outs.append(out)
    local = builder.freeze(outs)
    nodes = [
        dataclasses.replace(n, id=str(uuid.uuid5(_NAMESPACE, f"{node.id}/{j}")))
        for j, n in enumerate(local.nodes)
    ]
    external = tuple(node.parents if not n.parents else () for n in nodes)
    return Segment(len(graph), k, Graph(nodes, local.output), external, local.output)


def _fail(proc: Processor, node_id: str, message: str) -> None:
    proc.app.backend.mark_as_failure(node_id, ExpandError(message, node=node_id))


def expand_ready(
    proc: Processor,
    wf: str,
    token: str,
    loaded: Loaded,
    ready: list[int],
    results: dict[int, Any],
    changes: dict[int, int],
    states: bytes | bytearray = b"",
) -> tuple[Loaded, list[int], bool]:
    """Expand the EXPAND nodes among ``ready``; returns the (grown) workflow, the task nodes
    to publish (the new roots included, marked READY in ``changes``), and whether an EXPAND
    node ended at once (an empty input, or a failure): then tick again. ``states``: the
    node states at the tick's start (a segment stored before, e.g. by a retried workflow,
    publishes only its roots still WAITING). Raises HoldLost if the hold was taken over."""
    graph, header = loaded.graph, loaded.header
    if NodeKind.EXPAND not in graph.kinds:
        return loaded, ready, False
    nodes = graph.nodes
    todo = [i for i in ready if nodes[i].kind is NodeKind.EXPAND]
    if not todo:
        return loaded, ready, False
    publish = [i for i in ready if nodes[i].kind is not NodeKind.EXPAND]
    again = False
    while todo:
        k = todo.pop(0)
        node = graph.nodes[k]
        changes[k] = NodeState.LAUNCHED
        if k not in graph.expansions:
            extras = spec_extras(node.spec)
            items = extras["items"] if "items" in extras else evaluate(node.input, results)
            if not isinstance(items, (list, tuple)):
                kind = type(items).__name__
                _fail(
                    proc,
                    node.id,
                    f"expand node {node.id} ({node.name}) got {kind} "
                    f"{items!r:.80}: its parent must return a list",
                )
                again = True
                continue
            if len(items) > header.max_expand:
                _fail(
                    proc,
                    node.id,
                    f"expand node {node.id} ({node.name}) got {len(items)} "
                    f"items, over max_expand={header.max_expand}: raise "
                    f"Workflow(max_expand=...) or pass fewer items",
                )
                again = True
                continue
            try:
                segment = _segment(proc, graph, k, list(items))
            except DyrygentError as exc:  # the canvas cannot run over these items
                _fail(proc, node.id, f"expand node {node.id} ({node.name}): {exc}")
                again = True
                continue
            if len(graph) + len(segment.local) > header.max_nodes:
                _fail(
                    proc,
                    node.id,
                    f"expand node {node.id} ({node.name}) would grow the "
                    f"workflow to {len(graph) + len(segment.local)} nodes, over max_nodes="
                    f"{header.max_nodes}: raise Workflow(max_nodes=...)",
                )
                again = True
                continue
            sealed = seal_segment(proc.app, wf, encode_segment(segment))
            local_leaves = sum(1 for c in segment.local.children if not c)
            counter = (expansion_counter(k), local_leaves)
            stored = proc.store.extend(wf, token, k, sealed, counter)
            if stored is None:
                raise HoldLost(f"workflow {wf}: this tick's hold was taken over")
            if stored:
                graph = extend_graph(graph, [segment])
            else:  # an interrupted tick expanded it already: take the stored segment
                proc.loader.forget(wf)
                graph = proc.loader.load(wf).graph
        start, end, _ = graph.expansions[k]
        if start == end:
            proc.app.backend.store_result(node.id, [], celery_states.SUCCESS)
            again = True
        for j in range(start, end):
            settled = j < len(states) and states[j] != NodeState.WAITING
            if not settled and all(p < start for p in graph.nodes[j].parents):
                changes[j] = NodeState.READY
                if graph.nodes[j].kind is NodeKind.EXPAND:
                    todo.append(j)  # an expansion nested in this one: expand it too
                else:
                    publish.append(j)
    grown = Loaded(graph, header)
    proc.loader.remember(wf, grown)
    # (a re-tick after a lost commit may have planned the roots READY already: once each)
    return grown, sorted(set(publish)), again


def complete_expansions(
    backend: Any, graph: Graph, states: bytes | bytearray, seen: Observation
) -> None:
    """End every EXPAND node in flight whose items are all settled: store its result (or
    its failure) under its id, and record that as this tick's observation of it."""
    for k, (start, end, gather) in graph.expansions.items():
        seen_now = seen.outcomes.get(k, Outcome.RUNNING)
        if states[k] not in IN_FLIGHT_STATES or seen_now is not Outcome.RUNNING:
            continue
        if unfinished(states[start:end]):
            continue
        node = graph.nodes[k]
        ok = (NodeState.SUCCEEDED, NodeState.SKIPPED)
        failed = next((j for j in range(start, end) if states[j] not in ok), None)
        if failed is not None:
            cause = culprit(graph, states, failed)
            meta = read_metas(backend, [graph.nodes[cause].id])[0] if cause is not None else {}
            exc = exception_of(meta, graph.nodes[cause].id) if cause is not None else None
            error = exc or ExpandError(f"expand node {node.id}: an item was cancelled")
            backend.mark_as_failure(node.id, error)
            seen.outcomes[k] = Outcome.FAILED
            seen.metas[k] = {"status": celery_states.FAILURE, "result": error}
            continue
        refs = set(index_refs(gather))
        values: dict[int, Any] = {}
        fetch_results(backend, graph, {r for r in refs if states[r] == NodeState.SUCCEEDED}, values)
        value = evaluate(gather, {r: values.get(r) for r in refs})
        backend.store_result(node.id, value, celery_states.SUCCESS)
        seen.outcomes[k] = Outcome.SUCCEEDED
        seen.metas[k] = {"status": celery_states.SUCCESS, "result": value}


def expansions_pending(graph: Graph, states: bytes | bytearray) -> bool:
    """Whether an EXPAND node in flight has all its items settled (a tick should end it)."""
    return any(
        states[k] in IN_FLIGHT_STATES and not unfinished(states[start:end])
        for k, (start, end, _) in graph.expansions.items()
    )
