"""Telling the world what a committed tick changed: dyrygent's signals, the workflow's own
hooks (celery-dyrygent's ``Workflow.connect``), and its ``link`` / ``link_error`` callbacks.

Everything here runs after the commit that made the change (callbacks: just before the
commit that ends the workflow, see :func:`publish_callbacks`), and costs nothing when nobody
listens: :func:`listening` is a few attribute reads, and the per-node work is O(changes).
A failing receiver or hook is logged with its traceback and never breaks a workflow.
"""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from celery import states as celery_states
from kombu.utils.imports import symbol_by_name

from dyrygent import signals
from dyrygent.core.states import NodeState, WorkflowStatus
from dyrygent.engine.results import error_of, exception_of, read_metas
from dyrygent.info import state_name

if TYPE_CHECKING:
    from dyrygent.core.graph import Graph
    from dyrygent.engine.spec import Header

__all__ = [
    "HOOK_NAMES",
    "callback_id",
    "listening",
    "notify_end",
    "notify_tick",
    "publish_callbacks",
]

logger = logging.getLogger("dyrygent.processor")

#: celery-dyrygent's hook names; handlers are called ``handler(workflow, payload)``.
HOOK_NAMES = ("on_finish", "on_state_change", "after_active_tick")
_NODE_SIGNALS = {
    NodeState.LAUNCHED: signals.node_started,
    NodeState.SUCCEEDED: signals.node_succeeded,
    NodeState.FAILED: signals.node_failed,
}
_ALL = (
    signals.workflow_state_changed,
    signals.workflow_finished,
    signals.node_started,
    signals.node_succeeded,
    signals.node_failed,
    signals.after_tick,
)


def listening(header: Header) -> bool:
    """Whether any signal has a receiver or the workflow has hooks (else skip it all)."""
    return bool(header.hooks) or any(s.receivers for s in _ALL)


@lru_cache(maxsize=256)
def _resolve(path: str) -> Any:
    """The hook function at ``path``. Only a pure-Python function outside the standard
    library: the path comes from stored data, so it may not name ``os.system`` and the like
    (stored data is sealed when ``dyrygent_signing_key`` is set; this holds without it).
    Raises ValueError otherwise."""
    root = path.split(".", 1)[0]
    if root in sys.stdlib_module_names or root in ("celery", "kombu", "billiard"):
        raise ValueError(f"hook {path!r}: not a user function")
    fn = symbol_by_name(path)
    if not isinstance(fn, types.FunctionType):
        raise ValueError(f"hook {path!r} is a {type(fn).__name__}, not a function")
    return fn


def _call_hooks(app: Any, wf: str, header: Header, name: str, payload: dict[str, Any]) -> None:
    paths = header.hooks.get(name) or ()
    if not paths:
        return
    from dyrygent.workflow import WorkflowResult  # noqa: PLC0415 (the engine is imported first)

    view = WorkflowResult(wf, app=app)
    for path in paths:
        try:
            _resolve(path)(view, payload)
        except Exception:
            logger.exception("dyrygent: workflow %s: the %s hook %s failed", wf, name, path)


def notify_tick(
    app: Any,
    wf: str,
    graph: Graph,
    header: Header,
    changes: Mapping[int, int],
    metas: Mapping[int, dict[str, Any]],
    launched: int,
) -> None:
    """Node signals for the committed ``changes`` (metas: what the tick read of the nodes
    that ended), then ``after_tick`` / ``after_active_tick`` if something was launched."""
    wanted = {state: sig for state, sig in _NODE_SIGNALS.items() if sig.receivers}
    if wanted:
        nodes = graph.nodes
        for i, new in changes.items():
            sig = wanted.get(NodeState(new))
            if sig is None:
                continue
            node = nodes[i]
            extra: dict[str, Any] = {}
            if new == NodeState.FAILED:
                extra["error"] = error_of(metas.get(i) or {}, node.id)
            sig.send(
                sender=app,
                workflow_id=wf,
                node_id=node.id,
                label=node.label or node.task,
                task=node.task,
                **extra,
            )
    if launched:
        if signals.after_tick.receivers:
            signals.after_tick.send(sender=app, workflow_id=wf, launched=launched)
        _call_hooks(app, wf, header, "after_active_tick", {"launched": launched})


def notify_end(
    app: Any, wf: str, header: Header | None, status: WorkflowStatus, old: str = "RUNNING"
) -> None:
    """``workflow_state_changed`` and ``workflow_finished`` (with the stored result or
    error, one read), and the ``on_state_change`` / ``on_finish`` hooks."""
    state = state_name(status)
    hooks = header.hooks if header is not None else {}
    if signals.workflow_state_changed.receivers:
        signals.workflow_state_changed.send(sender=app, workflow_id=wf, old=old, new=state)
    if header is not None:
        _call_hooks(app, wf, header, "on_state_change", {"old": old, "new": state})
    if not (signals.workflow_finished.receivers or hooks.get("on_finish")):
        return
    meta = read_metas(app.backend, [wf])[0]
    if meta.get("status") == celery_states.SUCCESS:
        outcome: dict[str, Any] = {"result": meta.get("result")}
    else:
        outcome = {"error": exception_of(meta, wf)}
    signals.workflow_finished.send(sender=app, workflow_id=wf, state=state, **outcome)
    if header is not None:
        _call_hooks(app, wf, header, "on_finish", {"state": state, **outcome})


def callback_id(wf: str, kind: str) -> str:
    """The task id of workflow ``wf``'s ``link`` or ``link_error`` call: derived from the
    workflow id, so a repeat (a re-tick after a crash) is seen under the same id."""
    return f"{wf}.{kind}"


def publish_callbacks(
    app: Any,
    wf: str,
    graph: Graph,
    header: Header,
    status: WorkflowStatus,
    culprit: int | None,
    metas: Mapping[int, dict[str, Any]],
) -> None:
    """Publish the workflow's ``link`` (SUCCEEDED: called with its result) or ``link_error``
    (FAILED: called with the failed node's id and its error) from the tick that ends it,
    before that tick commits, under :func:`callback_id`. It first reads that id's meta and
    publishes only if it shows nothing, so an ending tick that is run again (it died, or
    failed, before committing) does not call it again once it has started: exactly once,
    except when the first publish is still queued when the tick runs again (then it runs
    twice, under the same id). Errors propagate (the tick is retried)."""
    from celery import signature  # noqa: PLC0415 (only for workflows with callbacks)

    if status is WorkflowStatus.SUCCEEDED and header.link:
        kind, spec = "link", header.link
    elif status is WorkflowStatus.FAILED and header.link_error:
        kind, spec = "link_error", header.link_error
    else:
        return
    task_id = callback_id(wf, kind)
    if read_metas(app.backend, [task_id])[0].get("status") != celery_states.PENDING:
        return  # published by an earlier attempt of this ending tick, and it got somewhere
    if kind == "link":
        args: tuple[Any, ...] = (read_metas(app.backend, [wf])[0].get("result"),)
    elif culprit is None:
        args = (None, {"type": "WorkflowError", "message": f"workflow {wf} failed"})
    else:
        node = graph.nodes[culprit]
        meta = metas.get(culprit) or read_metas(app.backend, [node.id])[0]
        args = (node.id, error_of(meta, node.id))
    signature(spec, app=app).apply_async(args, task_id=task_id, root_id=wf, parent_id=wf)
