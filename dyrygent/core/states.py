"""The vocabulary of states: one enum per concept, one table of allowed node transitions.

A node's state is stored as one byte (:class:`NodeState`); the values of format 1 (0 to 5) never
change, so workflows stored by an older release keep their meaning. A workflow's status is
stored as its lower-case name (:class:`WorkflowStatus`).

::

    WAITING ──► READY ──► LAUNCHED ──► RUNNING ──► SUCCEEDED
       │          │          │  │         │   └──► FAILED
       │          │          │  └─────────┼──────► SUCCEEDED / FAILED
       │          └──────────┴─────────────┴──────► CANCELLED
       ├──► UPSTREAM_FAILED   (its start rule can no longer be met because a parent failed)
       ├──► SKIPPED           (its start rule can no longer be met because parents skipped)
       └──► CANCELLED         (the workflow was cancelled before it started)

LAUNCHED and RUNNING may go back to READY: a relaunch, when the worker that took the node
died or no longer knows it (:mod:`dyrygent.engine.orphans`).

Every settled state (SUCCEEDED, FAILED, SKIPPED, CANCELLED, UPSTREAM_FAILED) may go back to
WAITING, and only through :func:`dyrygent.core.tick.plan_retry`.
"""

from __future__ import annotations

import enum

__all__ = [
    "DONE_STATES",
    "FAILED_STATES",
    "IN_FLIGHT_STATES",
    "NodeState",
    "RETRYABLE_STATES",
    "SETTLED_STATES",
    "TRANSITIONS",
    "WorkflowStatus",
]


class NodeState(enum.IntEnum):
    """The state of one node, stored as one byte per node."""

    WAITING = 0  # its start rule is not decided yet
    LAUNCHED = 1  # published to the broker; outcome not seen yet
    SUCCEEDED = 2  # its result was seen in the backend
    FAILED = 3  # it failed or was revoked
    READY = 4  # its start rule is met; not published yet (a publish failed, or not tried)
    RUNNING = 5  # the backend showed it started (or retrying); its result must follow
    SKIPPED = 6  # never run: its start rule can no longer be met (skipped parents, a branch)
    CANCELLED = 7  # never run or revoked: the workflow was cancelled
    UPSTREAM_FAILED = 8  # never run: its start rule can no longer be met (failed parents)


_SETTLED = frozenset(
    {
        NodeState.SUCCEEDED,
        NodeState.FAILED,
        NodeState.SKIPPED,
        NodeState.CANCELLED,
        NodeState.UPSTREAM_FAILED,
    }
)

#: The only state changes the processor may make.
TRANSITIONS: dict[NodeState, frozenset[NodeState]] = {
    NodeState.WAITING: frozenset(
        {NodeState.READY, NodeState.SKIPPED, NodeState.UPSTREAM_FAILED, NodeState.CANCELLED}
    ),
    NodeState.READY: frozenset({NodeState.LAUNCHED, NodeState.CANCELLED}),
    # -> READY: a relaunch (dyrygent.engine.orphans): the worker that took the node died, or
    # no longer knows it; its result was forgotten and it is published again next tick
    NodeState.LAUNCHED: frozenset(
        {
            NodeState.RUNNING,
            NodeState.SUCCEEDED,
            NodeState.FAILED,
            NodeState.CANCELLED,
            NodeState.READY,
        }
    ),
    NodeState.RUNNING: frozenset(
        {NodeState.SUCCEEDED, NodeState.FAILED, NodeState.CANCELLED, NodeState.READY}
    ),
    **{s: frozenset({NodeState.WAITING}) for s in _SETTLED},
}

#: States a node ends in: it will change no more unless the workflow is retried.
SETTLED_STATES: frozenset[NodeState] = _SETTLED
#: States whose outcome the processor must observe in the result backend.
IN_FLIGHT_STATES: frozenset[NodeState] = frozenset({NodeState.LAUNCHED, NodeState.RUNNING})
#: States that count as "failed" for start rules and the workflow's outcome.
FAILED_STATES: frozenset[NodeState] = frozenset({NodeState.FAILED, NodeState.UPSTREAM_FAILED})
#: States counted as done in a workflow's progress.
DONE_STATES: frozenset[NodeState] = _SETTLED
#: States plan_retry moves back to WAITING when no nodes are named.
RETRYABLE_STATES: frozenset[NodeState] = frozenset(
    {NodeState.FAILED, NodeState.UPSTREAM_FAILED, NodeState.SKIPPED, NodeState.CANCELLED}
)


class WorkflowStatus(str, enum.Enum):
    """A workflow's status as the store keeps it (the stored text is the value)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ERROR = "error"  # the processor gave up (bad stored data, max_age, repeated crashes)
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    @property
    def finished(self) -> bool:
        return self is not WorkflowStatus.RUNNING
