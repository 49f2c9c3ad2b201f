"""Waking the processor when a node ends, from the worker that ran it.

Every node is launched with WAKE_HEADER. When it ends, a ``task_postrun`` handler in that
worker counts down the node's join counters in the store (one Lua call) and, if one reached
zero (or the node failed, or it has a child with no other parent), ticks the workflow right
there, under the node's task id, as native Celery publishes a chain's next step from the
worker that ran the previous one. Counters are only a hint: a duplicate run ticks early
(harmless), and a miss is caught by the driver's backup tick.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import states as celery_states
from celery.signals import task_postrun

from dyrygent.core.graph import Graph
from dyrygent.engine.registry import processor_of

__all__ = [
    "END",
    "PROCESSOR_NAME",
    "WAKE_HEADER",
    "connect_wake_ups",
    "expansion_counter",
    "join_counters",
    "wake_counters",
]

logger = logging.getLogger("dyrygent.processor")

#: The name of the processor task (registered by register_workflow_processor).
PROCESSOR_NAME = "dyrygent.processor"

#: A message header asking the worker that runs a node to tick when the node ends:
#: [workflow id, processor publish options, join counters (None: always tick)].
WAKE_HEADER = "dyrygent_wake"
#: The join counter of the workflow's end (its sinks count it down).
END = -1
_MAX_COUNTERS = 64


def join_counters(graph: Graph) -> dict[int, int]:
    """The counters a workflow starts with: each node with several parents waits for that
    many completions, and the end waits for every sink."""
    joins = {i: len(n.parents) for i, n in enumerate(graph.nodes) if len(n.parents) > 1}
    sinks = sum(1 for c in graph.children if not c)
    if sinks:
        joins[END] = sinks
    return joins


def expansion_counter(k: int) -> int:
    """The join counter of EXPAND node ``k``'s expansion (the leaves of its segment count
    it down; node counters are >= 0 and the end's is -1)."""
    return -2 - k


def wake_counters(graph: Graph, i: int) -> list[int] | None:
    """The join counters node ``i`` counts down when it ends, or None when its end alone can
    make a child ready (a child with a single parent): then it always ticks."""
    children = graph.children[i]
    if not children:  # a leaf: the workflow's end, or the end of the expansion it is in
        owner = graph.expansion_of(i)
        return [END if owner is None else expansion_counter(owner)]
    nodes = graph.nodes
    if any(len(nodes[c].parents) == 1 for c in children) or len(children) > _MAX_COUNTERS:
        return None
    return list(children)


def _wake_after_node(
    sender: Any = None, task: Any = None, state: str | None = None, **_: Any
) -> None:
    """task_postrun: a node launched with WAKE_HEADER ended; send its processor a wake-up.

    Runs after the node's result is stored. In a worker that registered the processor, the
    node counts down its join counters; if one reaches zero (or the node failed, or it has a
    child with no other parent), the wake-up tick runs right here, under the node's task id
    (a busy workflow is marked dirty instead, so its holder ticks again). Elsewhere a wake-up
    message is sent; a failed publish is logged and dropped: the driver's backup tick comes
    anyway, and the node's outcome must never depend on it (unlike a ``link`` callback,
    whose failed publish fails the task).
    """
    if task is None or state not in (celery_states.SUCCESS, celery_states.FAILURE):
        return
    try:
        wake = task.request.get(WAKE_HEADER)
    except Exception:  # no request context (eager calls)
        return
    if not (
        isinstance(wake, list)
        and len(wake) == 3
        and isinstance(wake[0], str)
        and isinstance(wake[1], dict)
    ):
        return
    counters = wake[2]
    processor = processor_of(task.app)
    if processor is not None:  # tick right here, as native Celery chains from here
        if state == celery_states.SUCCESS and isinstance(counters, list):
            try:
                if not processor.store.count_down(wake[0], [int(c) for c in counters]):
                    return  # some join still waits for other nodes: no tick can launch more
            except Exception as exc:  # the store is down: the driver's backup tick will see
                logger.warning("dyrygent: workflow %s: count-down failed (%r)", wake[0], exc)
                return
        processor.tick_here(wake[0], task.request.id)
        return
    try:  # this worker's app has no processor: wake one through the broker
        task.app.send_task(PROCESSOR_NAME, (wake[0], None), **wake[1])
    except Exception as exc:
        logger.warning(
            "dyrygent: could not wake the processor of workflow %s (%r); its next "
            "tick will see the node",
            wake[0],
            exc,
        )


def connect_wake_ups() -> None:
    """Connect the task_postrun handler (once per process; register_workflow_processor calls
    it, so importing dyrygent connects nothing)."""
    task_postrun.connect(_wake_after_node, weak=False, dispatch_uid="dyrygent-wake-after-node")
