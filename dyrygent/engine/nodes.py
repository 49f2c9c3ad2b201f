"""What a tick does to nodes through Celery: publish the ready ones with their parents'
results injected, tell which an interrupted tick already published, fetch parents' results,
and fail the chords enclosing a failed node as Celery does."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, Callable

from celery import states as celery_states
from celery.exceptions import ChordError

from dyrygent.core.graph import Graph, Node, NodeState, evaluate
from dyrygent.engine.canvas import chord_body_for_errors
from dyrygent.engine.failures import broker_failure
from dyrygent.engine.results import read_metas
from dyrygent.engine.spec import Header, decode_spec, spec_extras
from dyrygent.engine.wake import WAKE_HEADER, wake_counters

__all__ = [
    "Gone",
    "HoldLost",
    "fail_enclosing_chords",
    "fetch_results",
    "launch",
    "node_call",
    "not_yet_published",
]

logger = logging.getLogger("dyrygent.processor")


class HoldLost(Exception):
    """The tick's hold lapsed and was taken over mid-launch: stop publishing."""


class Gone(Exception):
    """A result needed to build a node's arguments is no longer in the backend."""


def node_call(
    node: Node, results: dict[int, Any], defaults: Mapping[str, Any]
) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    """The (args, kwargs, options) ``node`` is called with: its own call, its input
    expression evaluated on ``results`` (by node index) prepended to its args, and its own
    options over the workflow's ``defaults``. Raises KeyError if a referenced result is
    missing from ``results`` (the caller gives None for a failed or skipped parent)."""
    args, kwargs, options = decode_spec(node.spec)
    if node.input is not None:
        args.insert(0, evaluate(node.input, results))
    return args, kwargs, {**defaults, **options}


def launch(
    app: Any,
    wf: str,
    token: str,
    graph: Graph,
    header: Header,
    ready: list[int],
    results: dict[int, Any],
    changes: dict[int, int],
    *,
    renew: Callable[[], bool],
    renew_at: float,
    renew_every: float,
    published: Callable[[str], None] | None = None,
) -> int:
    """Publish the ``ready`` nodes in order, their parents' results injected; mark each
    LAUNCHED in ``changes``; return how many went out. A publish that fails stops the
    launch: that node and the rest stay READY for the next tick. ``renew`` is called at
    ``renew_at`` (time.monotonic) and every ``renew_every`` seconds after (the hold's
    lease); if it says the hold was taken over, the launch stops (HoldLost). ``published``
    is called with each node id that went out. Serializers were checked at load time."""
    defaults = header.node_options
    processor_options = header.processor_options
    launched = 0
    with app.producer_or_acquire() as producer:
        for i in ready:
            if time.monotonic() > renew_at:  # a long launch: keep the hold alive
                try:
                    held = renew()
                except Exception:  # a store blip: go on, the lease has slack for one miss
                    logger.warning(
                        "dyrygent: workflow %s: could not renew the hold", wf, exc_info=True
                    )
                    held = True
                if not held:
                    raise HoldLost(f"workflow {wf}: this tick's hold was taken over")
                renew_at = time.monotonic() + renew_every
            node = graph.nodes[i]
            args, kwargs, options = node_call(node, results, defaults)
            wake = [wf, processor_options, wake_counters(graph, i)]
            # Flower and Celery's tools: the workflow is the root; a node with one parent
            # hangs under it (a chain shows as one), any other under the workflow itself
            parents = node.parents
            parent_id = graph.nodes[parents[0]].id if len(parents) == 1 else wf
            options["headers"] = {**(options.get("headers") or {}), WAKE_HEADER: wake}
            try:
                app.send_task(
                    node.task,
                    args,
                    kwargs,
                    task_id=node.id,
                    root_id=wf,
                    parent_id=parent_id,
                    producer=producer,
                    **options,
                )
            except Exception as exc:  # this node and the rest stay READY for the next tick
                outage = broker_failure(exc, f"publishing node {node.id} of workflow {wf}")
                if outage is not None:  # expected during an outage: one line, no traceback
                    logger.warning("dyrygent: %s; it stays READY for the next tick", outage)
                else:
                    logger.exception(
                        "dyrygent: workflow %s: publishing node %s failed; it stays READY for "
                        "the next tick",
                        wf,
                        node.id,
                    )
                break
            changes[i] = NodeState.LAUNCHED
            launched += 1
            if published is not None:
                published(node.id)
    return launched


def not_yet_published(
    backend: Any,
    graph: Graph,
    states: bytes,
    ready: list[int],
    changes: dict[int, int],
    retick: bool,
) -> list[int]:
    """Drop from ``ready`` the nodes an earlier, interrupted attempt already published.

    On a re-tick (this message's earlier attempt died before committing) every ready node
    may have been sent already; otherwise only the nodes READY at the start of the tick
    (a publish failed) may. If the backend shows such a node got anywhere (STARTED with
    task_track_started, RETRY, SUCCESS, ...) it is recorded as LAUNCHED instead of sent
    again: dyrygent never launches a node twice by itself.
    """
    carried = ready if retick else [i for i in ready if states[i] == NodeState.READY]
    if not carried:
        return ready
    metas = read_metas(backend, [graph.nodes[i].id for i in carried])
    seen = {i for i, m in zip(carried, metas) if m.get("status") != celery_states.PENDING}
    for i in seen:
        changes[i] = NodeState.LAUNCHED
    return [i for i in ready if i not in seen]


def fetch_results(backend: Any, graph: Graph, refs: set[int], results: dict[int, Any]) -> None:
    """Add to ``results`` the results of the nodes ``refs`` it lacks (one batched read);
    raise Gone if one is no longer in the backend."""
    missing = sorted(r for r in refs if r not in results)
    if not missing:
        return
    for i, meta in zip(missing, read_metas(backend, [graph.nodes[i].id for i in missing])):
        if meta.get("status") != celery_states.SUCCESS:
            node = graph.nodes[i]
            raise Gone(
                f"the result of node {node.id} ({node.task}) succeeded but is no longer in "
                f"the result backend (expired or evicted: raise result_expires above the "
                f"workflow's duration)"
            )
        results[i] = meta.get("result")


def fail_enclosing_chords(
    app: Any, node: Any, exc: BaseException, settled_now: Callable[[str], bool]
) -> None:
    """Fail the chords whose header holds ``node`` as Celery does: their bodies' errbacks
    are called (either style) and the bodies marked FAILURE with a ChordError, once per
    chord: only for bodies that ``settled_now(body_id)`` says this failure settled."""
    for chord in spec_extras(node.spec).get("chord_errbacks") or ():
        if not settled_now(chord["id"]):
            continue
        body = chord_body_for_errors(chord, app)
        try:
            app.backend.chord_error_from_stack(
                body, ChordError(f"Dependency {node.id} raised {exc!r}")
            )
        except Exception:  # an errback's failure must not stop the workflow's end
            logger.exception("dyrygent: calling the errbacks of chord body %s failed", chord["id"])
