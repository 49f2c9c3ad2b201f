"""What a tick does to nodes through Celery: publish the ready ones with their parents'
results injected, tell which an interrupted tick already published, fetch parents' results,
and fail the chords enclosing a failed node as Celery does."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from celery import states as celery_states
from celery.exceptions import ChordError

from dyrygent.core.graph import Graph, NodeState, evaluate
from dyrygent.engine.canvas import chord_body_for_errors
from dyrygent.engine.results import read_metas
from dyrygent.engine.spec import decode_spec, spec_extras
from dyrygent.engine.trust import UNSAFE_SERIALIZERS
from dyrygent.engine.wake import WAKE_HEADER, wake_counters
from dyrygent.errors import PayloadError

__all__ = [
    "Gone",
    "HoldLost",
    "fail_enclosing_chords",
    "fetch_results",
    "launch",
    "not_yet_published",
]

logger = logging.getLogger("dyrygent.processor")


class HoldLost(Exception):
    """The tick's hold lapsed and was taken over mid-launch: stop publishing."""


class Gone(Exception):
    """A result needed to build a node's arguments is no longer in the backend."""


def launch(
    app: Any,
    wf: str,
    token: str,
    graph: Graph,
    header: dict,
    ready: list[int],
    results: dict,
    changes: dict[int, int],
    *,
    allow_pickle: bool,
    renew: Callable[[], bool],
    renew_at: float,
    renew_every: float,
) -> int:
    """Publish the ``ready`` nodes in order, their parents' results injected; mark each
    LAUNCHED in ``changes``; return how many went out. A publish that fails stops the
    launch: that node and the rest stay READY for the next tick. ``renew`` is called at
    ``renew_at`` (time.monotonic) and every ``renew_every`` seconds after (the hold's
    lease); if it says the hold was taken over, the launch stops (HoldLost)."""
    defaults = header.get("node_options") or {}
    processor_options = header.get("processor_options") or {}
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
            args, kwargs, options = decode_spec(node.spec)
            if node.input is not None:
                args.insert(0, evaluate(node.input, results))
            options = {**defaults, **options}
            if (
                not allow_pickle
                and str(options.get("serializer", "")).lower() in UNSAFE_SERIALIZERS
            ):
                raise PayloadError(
                    f"workflow {wf}: node {node.id} asks for serializer "
                    f"{options['serializer']!r}; the processor sends no pickle or yaml "
                    f"unless register_workflow_processor(app, allow_pickle=True)"
                )
            wake = [wf, processor_options, wake_counters(graph, i)]
            options["headers"] = {**(options.get("headers") or {}), WAKE_HEADER: wake}
            try:
                app.send_task(
                    node.task,
                    args,
                    kwargs,
                    task_id=node.id,
                    root_id=wf,
                    parent_id=token,
                    producer=producer,
                    **options,
                )
            except Exception:  # broker errors are many types; the rest stay READY
                logger.exception(
                    "dyrygent: workflow %s: publishing node %s failed; "
                    "it stays READY for the next tick",
                    wf,
                    node.id,
                )
                break
            changes[i] = NodeState.LAUNCHED
            launched += 1
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


def fetch_results(backend: Any, graph: Graph, refs: set, results: dict) -> None:
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


def fail_enclosing_chords(app: Any, node: Any, exc: BaseException) -> None:
    """Fail the chords whose header holds ``node`` as Celery does: their bodies' errbacks
    are called (either style) and the bodies marked FAILURE with a ChordError."""
    for chord in spec_extras(node.spec).get("chord_errbacks") or ():
        body = chord_body_for_errors(chord, app)
        try:
            app.backend.chord_error_from_stack(
                body, ChordError(f"Dependency {node.id} raised {exc!r}")
            )
        except Exception:  # an errback's failure must not stop the workflow's end
            logger.exception("dyrygent: calling the errbacks of chord body %s failed", chord["id"])
