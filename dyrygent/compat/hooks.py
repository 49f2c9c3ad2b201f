"""celery-dyrygent's workflow hooks: ``Workflow.connect("on_finish")`` and its two siblings.

As in celery-dyrygent, a handler connected on ``dyrygent.workflows.Workflow`` (or any
subclass) applies to every workflow ticked in this process, and is called
``handler(workflow, payload)``:

* ``after_active_tick``: a tick launched nodes (payload None);
* ``on_finish``: the workflow ended, succeeded or failed (payload None), then
  ``on_state_change`` with ``"SUCCESS"`` or ``"FAILURE"``;
* ``on_state_change``: ``"RUNNING"`` when ``apply_async`` starts it, ``"ERROR"`` when the
  processor gives up on it.

``workflow`` is a :class:`HookWorkflow` (the Workflow object itself lives in the client).
Handlers run where the ticks run: connect them in a module your workers import, as
celery-dyrygent required. A handler that raises is logged and never breaks a workflow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery.result import AsyncResult

from dyrygent.errors import BuildError

__all__ = [
    "HANDLERS",
    "HOOK_NAMES",
    "HookWorkflow",
    "connect",
    "connected",
    "disconnect",
    "emit",
    "install",
]

logger = logging.getLogger("dyrygent.compat")

HOOK_NAMES = ("after_active_tick", "on_finish", "on_state_change")
Handler = Callable[[Any, Any], Any]
# celery-dyrygent's hooks are one registry per process, shared by every workflow: that is
# their meaning, kept here for migrating users (dyrygent's own hooks belong to a processor).
HANDLERS: dict[str, list[Handler]] = {name: [] for name in HOOK_NAMES}
_HOOKS = HANDLERS
_ENDS = {"succeeded": "SUCCESS", "failed": "FAILURE", "error": "ERROR"}


@dataclass
class HookWorkflow:
    """What a hook handler receives as ``workflow``: the workflow's ``id``, its
    ``custom_payload``, its ``state`` (celery-dyrygent's names: RUNNING, SUCCESS, FAILURE,
    ERROR) and ``result``, its AsyncResult."""

    id: str
    custom_payload: dict[str, Any] = field(default_factory=dict)
    state: str = "RUNNING"
    app: Any = None

    @property
    def result(self) -> AsyncResult:
        return AsyncResult(self.id, app=self.app)


def connect(name: str) -> Callable[[Handler], Handler]:
    """A decorator connecting ``handler(workflow, payload)`` to hook ``name`` for every
    workflow ticked in this process. Raises BuildError for an unknown name."""
    if name not in _HOOKS:
        raise BuildError(f"{name!r}: invalid signal; the hooks are {list(HOOK_NAMES)}")

    def decorator(handler: Handler) -> Handler:
        if handler not in _HOOKS[name]:
            _HOOKS[name].append(handler)
        return handler

    return decorator


def disconnect(name: str, handler: Handler) -> None:
    """Remove ``handler`` from hook ``name`` (a no-op if it is not connected)."""
    if handler in _HOOKS.get(name, ()):
        _HOOKS[name].remove(handler)


def connected(name: str) -> bool:
    return bool(_HOOKS[name])


def emit(name: str, workflow: HookWorkflow, payload: Any = None) -> None:
    """Call every handler of ``name``; one that raises is logged, never raised."""
    for handler in list(_HOOKS[name]):
        try:
            handler(workflow, payload)
        except Exception:
            logger.warning(
                "dyrygent: workflow %s: the %s hook %r failed", workflow.id, name, handler,
                exc_info=True,
            )  # fmt: skip


def install(processor: Any) -> None:
    """Fire the hooks from ``processor``'s own hooks (after each tick and run)."""

    def view(wf: str, state: str) -> HookWorkflow:
        try:
            extras = processor.extras(wf) if hasattr(processor, "extras") else {}
        except Exception:  # the tick reports a bad header; the hook still runs
            extras = {}
        return HookWorkflow(wf, dict(extras.get("custom_payload") or {}), state, processor.app)

    def after_tick(wf: str, changes: Any, launched: int) -> None:
        if launched and connected("after_active_tick"):
            emit("after_active_tick", view(wf, "RUNNING"))

    def after_run(kind: str, wf: str, outcome: str) -> None:
        state = _ENDS.get(str(outcome))
        if state is None or not (connected("on_finish") or connected("on_state_change")):
            return
        workflow = view(wf, state)
        if state != "ERROR":
            emit("on_finish", workflow)
        emit("on_state_change", workflow, state)

    processor.hooks.connect("after_tick", after_tick)
    processor.hooks.connect("after_run", after_run)
