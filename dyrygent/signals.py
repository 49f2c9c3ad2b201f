"""Signals dyrygent sends (Celery's dispatch machinery: a receiver that raises is logged with
its traceback by ``Signal.send`` and never breaks a workflow).

The sender of every signal is the Celery app whose processor (or client, for ``cancel`` and
``retry``) made the change, so ``signal.connect(receiver, sender=app)`` listens to one app.
Signals fire in the process that committed the change: the worker that ticked (a processor
message, or the worker that ran a node and ticked right there), or the client that
started, cancelled or retried the workflow. Connect receivers where they should run (in the
workers' module, for changes made by ticks).

Each is sent after the commit that made the change, at most once per committed change: a
tick retried after a failure sees the states it committed and does not send them again;
a process that dies between its commit and its sends loses those signals (use the store's
history, ``WorkflowResult.history()``, when every change must be seen).

* ``tick_claimed``: a processor has claimed a workflow and is about to tick (``workflow_id``,
  ``gen``, ``attempts``: 2 or more for a re-tick after a crash, ``driver``: False for a
  wake-up tick or the client's first tick);
* ``workflow_state_changed``: ``workflow_id``, ``old``, ``new`` (the names of
  ``WorkflowInfo.state``: RUNNING, SUCCESS, FAILURE, ERROR, CANCELLED);
* ``workflow_finished``: ``workflow_id``, ``state``, and ``result`` (SUCCESS) or ``error``
  (the exception its ``get()`` raises);
* ``node_started`` (the node was published), ``node_succeeded``, ``node_failed``:
  ``workflow_id``, ``node_id``, ``label``, ``task``, and ``error`` for a failed node
  (``{"type": ..., "message": ...}``);
* ``after_tick``: ``workflow_id``, ``launched`` (sent only after a tick that launched
  something).
"""

from __future__ import annotations

from celery.utils.dispatch import Signal

__all__ = [
    "after_tick",
    "node_failed",
    "node_started",
    "node_succeeded",
    "tick_claimed",
    "workflow_finished",
    "workflow_state_changed",
]

tick_claimed = Signal(
    name="dyrygent_tick_claimed", providing_args={"workflow_id", "gen", "attempts", "driver"}
)
workflow_state_changed = Signal(
    name="dyrygent_workflow_state_changed", providing_args={"workflow_id", "old", "new"}
)
workflow_finished = Signal(
    name="dyrygent_workflow_finished", providing_args={"workflow_id", "state", "result", "error"}
)
_NODE_ARGS = {"workflow_id", "node_id", "label", "task"}
node_started = Signal(name="dyrygent_node_started", providing_args=_NODE_ARGS)
node_succeeded = Signal(name="dyrygent_node_succeeded", providing_args=_NODE_ARGS)
node_failed = Signal(name="dyrygent_node_failed", providing_args=_NODE_ARGS | {"error"})
after_tick = Signal(name="dyrygent_after_tick", providing_args={"workflow_id", "launched"})
