"""Steering a workflow from any process: cancel it, retry what failed, forget it.

**Cancel** goes through the fence: the request claims the workflow like a wake-up tick
(waiting while a tick holds it; a dead holder's hold is taken over after the lease), and
while it holds the claim no tick can run, so none can launch anything. Holding it, it
revokes the launched and running nodes (``app.control.revoke``; those whose result is
already in the backend keep their outcome instead), marks every other unsettled node
CANCELLED (:func:`~dyrygent.core.tick.plan_cancel`), stores the workflow's result as
REVOKED (``get()`` raises TaskRevokedError) and commits the CANCELLED status at the next
generation. From then on every claim answers DONE: a duplicate or outstanding processor
message, a wake-up from a node that still ends, a worker restarted with its messages
redelivered, none of them launches anything. So no node is launched after ``cancel()``
returns. (The one exception is a tick whose hold lapsed mid-launch, e.g. a process frozen
longer than the lease: it stops at its next renewal, at most a fifth of the lease later.)
A revoked node's message may still run on a worker restarted without ``--statedb`` (Celery
keeps revokes in memory); its end then finds the workflow over.

**Retry** reopens a FAILED, ERROR or CANCELLED workflow under the same id: the nodes to
run again go back to WAITING (:func:`~dyrygent.core.tick.plan_retry`) and run under their
own task ids, after their old metas and the workflow's own result are forgotten
(``backend.forget``), so ``get()`` waits for the new result; succeeded nodes keep their
results, which flow to their reopened children. The store's reopen moves the generation
fence on, so every driver of the old run is stale, and a new driver is published.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from celery import states as celery_states
from celery.utils import uuid

from dyrygent.core.graph import Graph, NodeKind, index_refs
from dyrygent.core.outcome import verdict
from dyrygent.core.states import NodeState, WorkflowStatus
from dyrygent.core.tick import Outcome, in_flight, plan_cancel, plan_retry
from dyrygent.engine.branching import chosen_names
from dyrygent.engine.loading import Loaded
from dyrygent.engine.notify import callback_id, notify_end
from dyrygent.engine.registry import processor_of
from dyrygent.engine.results import forget_results, outcome_of, read_metas
from dyrygent.engine.stores import DEFAULT_LEASE, ClaimStatus, records_keep, store_for
from dyrygent.engine.wake import PROCESSOR_NAME
from dyrygent.engine.watching import forget_view, load_view
from dyrygent.errors import SteeringError
from dyrygent.info import state_name

__all__ = ["cancel", "forget", "retry"]

logger = logging.getLogger("dyrygent.processor")

_REOPENABLE = (WorkflowStatus.FAILED, WorkflowStatus.ERROR, WorkflowStatus.CANCELLED)


def _lease(app: Any) -> float:
    processor = processor_of(app)
    return processor.timing.lease if processor is not None else DEFAULT_LEASE


def _view(app: Any, wf: str, size: int) -> Loaded:
    """``wf``'s graph and header; ``size`` node states are stored (a graph that grew by an
    expansion since it was cached here is read again)."""
    loaded = load_view(app, store_for(app), wf, size)
    if loaded is None:
        raise SteeringError(f"workflow {wf} is not stored (never started, forgotten or expired)")
    return loaded


def cancel(app: Any, wf: str, terminate: bool = False, timeout: float = 60.0) -> bool:
    """Cancel ``wf`` (see the module docstring); true if this call cancelled it, false if
    it had already ended or is unknown (logged). Raises SteeringError if a tick held the
    workflow for all of ``timeout`` seconds (nothing was changed: call it again)."""
    store = store_for(app)
    token = f"cancel-{uuid()}"
    lease = _lease(app)
    deadline = time.monotonic() + timeout
    while True:
        claim = store.claim(wf, None, token, True, lease)
        if claim.status in (ClaimStatus.OK, ClaimStatus.EXPIRED):
            break
        if claim.status in (ClaimStatus.DONE, ClaimStatus.GONE):
            logger.info("dyrygent: workflow %s: not cancelled, it is %s", wf, claim.status)
            return False
        if time.monotonic() > deadline:
            raise SteeringError(
                f"workflow {wf}: cancel() waited {timeout}s for the tick holding it to "
                f"commit; nothing was changed: call cancel() again"
            )
        time.sleep(0.02)
    try:
        states = bytes(claim.states)
        loaded = _view(app, wf, len(states))
        nodes = loaded.graph.nodes
        states += bytes(len(nodes) - len(states))  # (a segment stored, its commit lost)
        changes = plan_cancel(states)
        flying = in_flight(states)
        # nodes that ended before the cancel keep their outcome (a retry will not rerun a
        # node that succeeded): one batched read
        for i, meta in zip(flying, read_metas(app.backend, [nodes[i].id for i in flying])):
            seen = outcome_of(meta)
            if seen is Outcome.SUCCEEDED:
                changes[i] = NodeState.SUCCEEDED
            elif seen is Outcome.FAILED:
                changes[i] = NodeState.FAILED
        # the rest in flight, and READY ones too (an interrupted tick may have sent them);
        # taking a dead tick's hold over, also the nodes it may have sent without committing
        # (waiting ones whose parents all succeeded, and those of a segment it stored)
        ready = [i for i, s in enumerate(states) if s == NodeState.READY]
        if claim.attempts > 1:
            ready += [
                i
                for i, s in enumerate(states)
                if s == NodeState.WAITING
                and (
                    i >= len(claim.states)
                    or all(states[p] == NodeState.SUCCEEDED for p in nodes[i].parents)
                )
            ]
        ids = [nodes[i].id for i in sorted(flying + ready) if changes[i] == NodeState.CANCELLED]
        if ids:
            app.control.revoke(ids, terminate=terminate)
        app.backend.mark_as_revoked(wf, reason=f"workflow {wf} was cancelled")
    except BaseException:
        store.release(wf, token)
        raise
    if store.commit(wf, token, changes, claim.gen + 1, WorkflowStatus.CANCELLED) is None:
        raise SteeringError(
            f"workflow {wf}: cancel() lost its hold on the workflow (it took longer than the "
            f"lease of {lease}s): call cancel() again"
        )
    logger.info("dyrygent: workflow %s cancelled (%d nodes revoked)", wf, len(ids))
    notify_end(app, wf, loaded.header, WorkflowStatus.CANCELLED)
    return True


def _targets(graph: Graph, wf: str, nodes: Iterable[str]) -> list[int]:
    """Node indices for ``nodes`` (ids, or labels: every node so labelled)."""
    by_label: dict[str, list[int]] = {}
    for i, n in enumerate(graph.nodes):
        by_label.setdefault(n.label or n.task, []).append(i)
    out: list[int] = []
    for name in nodes:
        if name in graph.index:
            out.append(graph.index[name])
        elif name in by_label:
            out.extend(by_label[name])
        else:
            raise SteeringError(
                f"retry(nodes=[{name!r}]): workflow {wf} has no node with that id or label"
            )
    return out


def retry(app: Any, wf: str, nodes: Iterable[str] | None = None, max_age: int = 0) -> bool:
    """Reopen ``wf`` (see the module docstring); ``nodes`` (ids or labels): rerun those and
    their descendants only. True if reopened, false if there was nothing to rerun.
    ``max_age``: seconds it may run from now (0: the default of Workflow).

    Raises SteeringError, before anything is changed, if it is running or unknown, if a
    node or label is unknown, or if a succeeded node whose result a reopened node (or the
    workflow's result) needs has expired from the result backend (naming the node).
    """
    from dyrygent.workflow import DEFAULT_MAX_AGE  # noqa: PLC0415 (import cycle)

    store = store_for(app)
    record = store.status(wf)
    if record.status is None:
        raise SteeringError(f"workflow {wf} is not stored (never started, forgotten or expired)")
    if record.status is WorkflowStatus.RUNNING:
        raise SteeringError(f"workflow {wf} is running: cancel() it first, or wait for its end")
    loaded = _view(app, wf, len(record.states))
    graph, header = loaded.graph, loaded.header
    states = bytearray(record.states) + bytes(len(graph) - len(record.states))
    flying = in_flight(states)  # an ERROR end may leave nodes in flight: see what they did
    for i, meta in zip(flying, read_metas(app.backend, [graph.nodes[i].id for i in flying])):
        seen = outcome_of(meta)
        if seen is Outcome.SUCCEEDED:
            states[i] = NodeState.SUCCEEDED
        elif seen is Outcome.FAILED:
            states[i] = NodeState.FAILED
        else:  # still queued or running: relaunching it now would run it twice
            raise SteeringError(
                f"workflow {wf}: node {graph.nodes[i].id} ({graph.nodes[i].name}) it left in "
                f"flight has not finished yet: wait for it (or revoke it), then retry()"
            )
    for i, s in enumerate(states):
        if s == NodeState.READY:
            states[i] = NodeState.CANCELLED
    if nodes is None and record.status is not WorkflowStatus.SUCCEEDED:
        reopen = plan_retry(graph, states)
    elif nodes is not None:
        reopen = plan_retry(graph, states, _targets(graph, wf, nodes))
    else:
        reopen = {}
    _keep_unchosen_skipped(app, graph, states, reopen)
    if not reopen and not flying:
        logger.info("dyrygent: workflow %s: nothing to retry", wf)
        return False
    _check_kept_results(app, wf, graph, states, reopen)
    for i, s in reopen.items():
        states[i] = s
    stored = bytes(record.states) + bytes(len(states) - len(record.states))
    changes = {i: s for i, s in enumerate(states) if s != stored[i]}
    # the old outcomes: reopened nodes', the workflow's own, its callbacks' (they run again)
    callbacks = [callback_id(wf, "link"), callback_id(wf, "link_error")]
    forget_results(app.backend, [graph.nodes[i].id for i in reopen] + [wf, *callbacks])
    if not store.reopen(wf, record.gen, changes, max_age or DEFAULT_MAX_AGE, records_keep(app)):
        raise SteeringError(
            f"workflow {wf} changed while retry() prepared it (another retry or a start): "
            f"look at its info() and call retry() again if needed"
        )
    options = {"root_id": wf, **header.processor_options}
    app.send_task(PROCESSOR_NAME, (wf, record.gen + 1), **options)
    logger.info("dyrygent: workflow %s reopened (%d nodes to run again)", wf, len(reopen))
    notify_end_reopened(app, wf, record.status)
    _store_decided_outcome(app, wf, graph, states, header.fail_fast)
    return True


def _store_decided_outcome(
    app: Any, wf: str, graph: Graph, states: bytearray, fail_fast: bool
) -> None:
    """A partial retry can leave the outcome decided already (another leaf stays failed):
    no tick will decide it again, so store it now, as the tick that decided it did."""
    decided = verdict(graph, states, fail_fast=fail_fast)
    if decided.status is not WorkflowStatus.FAILED:
        return
    from dyrygent.engine.finishing import Finisher  # noqa: PLC0415 (an import cycle)

    Finisher(app, store_for(app)).decide(wf, graph, states, decided, {}, {})


def _keep_unchosen_skipped(
    app: Any, graph: Graph, states: bytearray, reopen: dict[int, NodeState]
) -> None:
    """A branch that stays succeeded keeps its choice: its children it did not choose stay
    SKIPPED (their reopened descendants are then skipped again by their start rules)."""
    branches = [
        i
        for i, node in enumerate(graph.nodes)
        if node.kind is NodeKind.BRANCH and states[i] == NodeState.SUCCEEDED and i not in reopen
    ]
    if not branches:
        return
    metas = read_metas(app.backend, [graph.nodes[i].id for i in branches])
    for i, meta in zip(branches, metas):
        chosen = set(chosen_names(meta.get("result")) or ())
        for c in graph.children[i]:
            if c in reopen and graph.nodes[c].name not in chosen:
                del reopen[c]


def notify_end_reopened(app: Any, wf: str, old: WorkflowStatus) -> None:
    from dyrygent import signals  # noqa: PLC0415

    if signals.workflow_state_changed.receivers:
        signals.workflow_state_changed.send(
            sender=app, workflow_id=wf, old=state_name(old), new="RUNNING"
        )


def _check_kept_results(
    app: Any, wf: str, graph: Graph, states: bytearray, reopen: dict[int, NodeState]
) -> None:
    """Raise SteeringError naming the first succeeded node that stays succeeded and whose
    result is needed (a reopened node's parent, or in the workflow's output) but expired."""
    needed = {p for i in reopen for p in graph.nodes[i].parents}
    needed |= set(index_refs(graph.output))
    kept = sorted(i for i in needed if i not in reopen and states[i] == NodeState.SUCCEEDED)
    metas = read_metas(app.backend, [graph.nodes[i].id for i in kept])
    for i, meta in zip(kept, metas):
        if meta.get("status") != celery_states.SUCCESS:
            node = graph.nodes[i]
            raise SteeringError(
                f"workflow {wf} cannot be retried: the result of node {node.id} "
                f"({node.label or node.task}) has expired from the result backend, and the "
                f"nodes to rerun need it; retry(nodes=[{node.id!r}]) reruns it too"
            )


def forget(app: Any, wf: str) -> None:
    """Delete ``wf``'s records and its nodes' and its own results; a no-op if unknown."""
    store = store_for(app)
    loaded = load_view(app, store, wf)
    ids = [n.id for n in loaded.graph.nodes] if loaded is not None else []
    forget_results(app.backend, [*ids, wf, callback_id(wf, "link"), callback_id(wf, "link_error")])
    store.forget(wf)
    forget_view(app, wf)
