"""One tick of a claimed workflow: observe, plan, decide, launch, re-arm, commit.

The caller (:class:`~dyrygent.engine.processor.Processor`) holds the workflow's claim. The tick
reads the outcome of in-flight nodes in one batched read, plans
(:func:`dyrygent.core.tick.plan_tick`), stores the workflow's result once it is decided,
publishes the ready nodes with their parents' results injected, publishes the next driver if
it is the driver, then commits the changed node states.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from dyrygent.core.graph import index_refs
from dyrygent.core.states import NodeState, WorkflowStatus
from dyrygent.core.tick import in_flight, plan_tick
from dyrygent.engine.branching import branch_choices
from dyrygent.engine.expanding import complete_expansions, expand_ready, expansions_pending
from dyrygent.engine.loading import Loaded, check_states
from dyrygent.engine.nodes import (
    Gone,
    fail_enclosing_chords,
    fetch_results,
    launch,
    not_yet_published,
)
from dyrygent.engine.notify import listening, notify_end, notify_tick, publish_callbacks
from dyrygent.engine.results import exception_of, observe
from dyrygent.errors import WorkflowError

if TYPE_CHECKING:
    from dyrygent.engine.processor import Processor

__all__ = ["AGAIN", "tick"]

#: What a tick returns when nodes ended while it held the workflow: tick again.
AGAIN = "again"
_SETTLED_UNRUN = (NodeState.UPSTREAM_FAILED, NodeState.CANCELLED)


def tick(
    proc: Processor,
    wf: str,
    gen: int,
    token: str,
    states: bytes,
    loaded: Loaded,
    *,
    retick: bool = False,
    driver: bool = True,
    idle: int = 0,
    claimed_at: float | None = None,
) -> str:
    """Run one tick; returns the workflow's status text, or AGAIN. Errors propagate (the
    caller retries or releases)."""
    app, store, graph, header = proc.app, proc.store, loaded.graph, loaded.header
    backend = app.backend
    if len(states) != len(graph):  # the graph grew (an expansion): here, or elsewhere
        loaded, states = grown(proc, wf, loaded, states)
        graph = loaded.graph
    check_states(wf, graph, states)
    flying = in_flight(states)
    reading = proc.window.select(flying)
    seen = observe(backend, graph, states, reading)
    if graph.expansions:
        complete_expansions(backend, graph, states, seen)
    if seen.vanished:  # seen started, now unknown: its result expired or was evicted
        proc.finisher.vanished(wf, token, gen, graph, seen.vanished[0])
        return WorkflowStatus.ERROR.value
    seen, relaunch = proc.orphans.review(app, store, wf, graph, states, seen)
    choices = branch_choices(backend, graph, seen)
    plan = plan_tick(graph, states, seen.outcomes, fail_fast=header.fail_fast, choices=choices)
    changes: dict[int, int] = dict(plan.changes)
    changes.update(relaunch)  # (READY: published again next tick, this one says AGAIN)
    metas = seen.metas
    results = {i: metas[i].get("result") for i, s in changes.items() if s == NodeState.SUCCEEDED}
    index = graph.index

    def settled_now(body_id: str) -> bool:
        j = index.get(body_id)
        return j is None or changes.get(j) in _SETTLED_UNRUN

    for i in plan.failed:  # chords whose body this failure settled get their errbacks
        node = graph.nodes[i]
        fail_enclosing_chords(app, node, exception_of(metas[i], node.id), settled_now)
    current = bytearray(states)
    for i, s in changes.items():
        current[i] = s
    try:
        if plan.decided:
            proc.finisher.decide(wf, graph, current, plan.verdict, metas, results)
        if plan.done:
            status = plan.verdict.status or WorkflowStatus.FAILED
            if header.link or header.link_error:
                culprit = plan.verdict.culprit
                publish_callbacks(app, wf, graph, header, status, culprit, metas)
            if store.commit(wf, token, changes, gen + 1, status) is not None and listening(header):
                notify_tick(app, wf, graph, header, changes, metas, 0)
                notify_end(app, wf, header, status)
            proc.hooks.fire("after_tick", wf, plan.changes, 0)
            return status.value
        nodes = graph.nodes
        needed = {r for i in plan.ready for r in index_refs(nodes[i].input)}
        succeeded = {r for r in needed if current[r] == NodeState.SUCCEEDED}
        fetch_results(backend, graph, succeeded, results)
        for r in needed:
            results.setdefault(r, None)  # a failed or skipped parent gives None
    except Gone as exc:
        proc.finisher.error(wf, token, gen, WorkflowError(str(exc)), changes)
        return WorkflowStatus.ERROR.value

    loaded, ready, again = expand_ready(
        proc, wf, token, loaded, plan.ready, results, changes, current
    )
    if loaded.graph is not graph:
        graph = loaded.graph
        states += bytes(len(graph) - len(states))
        current += bytes(len(graph) - len(current))
        for i, s in changes.items():
            current[i] = s
    ready = not_yet_published(backend, graph, states, ready, changes, retick)
    launched = launch(
        app,
        wf,
        token,
        graph,
        header,
        ready,
        results,
        changes,
        renew=lambda: store.touch(wf, token),
        renew_at=(claimed_at or time.monotonic()) + proc.timing.renew_every,
        renew_every=proc.timing.renew_every,
        published=proc.published_hook(wf),
    )
    # Nodes wake the processor when they end, so the next driver published here is a backup:
    # for wake-ups lost to a broker hiccup, nodes run by workers that do not import dyrygent,
    # or a publish that failed this tick (then: soon). Only the driver advances the generation
    # and publishes its successor; a wake-up tick leaves the outstanding driver valid.
    next_gen = gen
    if driver:
        finished = any(v == NodeState.SUCCEEDED for v in plan.changes.values())
        idle = proc.timing.next_idle(idle, finished or bool(ready))
        countdown = proc.timing.driver_countdown(idle, launched < len(ready))
        try:
            proc.publish_tick(wf, header.processor_options, gen + 1, countdown, idle)
        except Exception:
            # this message stays the driver (it comes back: see Processor.again), so keep
            # what was launched under the current generation, and let the error retry it
            store.commit(wf, token, changes, gen, WorkflowStatus.RUNNING)
            raise
        next_gen = gen + 1
    dirty = store.commit(wf, token, changes, next_gen, WorkflowStatus.RUNNING)
    if dirty is not None and listening(header):  # O(1) when nobody listens
        notify_tick(app, wf, graph, header, changes, metas, launched)
    proc.hooks.fire("after_tick", wf, plan.changes, launched)
    if len(reading) < len(flying) and plan.changes:
        dirty = True  # more in flight than this tick read, and it saw progress: go on
    if again or (graph.expansions and expansions_pending(graph, current)):
        dirty = True  # an expand node can end now: tick again
    if relaunch:
        dirty = True  # relaunched nodes: publish them now
    return AGAIN if dirty else WorkflowStatus.RUNNING.value


def grown(proc: Processor, wf: str, loaded: Loaded, states: bytes) -> tuple[Loaded, bytes]:
    """The workflow and states when their sizes differ: a graph grown elsewhere is loaded
    again; states shorter than the graph (a tick stored a segment, then died before its
    commit) are WAITING for the rest."""
    if len(states) > len(loaded.graph):
        proc.loader.forget(wf)
        loaded = proc.loader.load(wf)
    if len(states) < len(loaded.graph):
        states += bytes(len(loaded.graph) - len(states))
    return loaded, states
