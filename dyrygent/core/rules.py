"""Start rules: when a node may start, given its parents' states (Airflow's trigger rules).

A node's rule looks at its parents only. Each parent counts as one of: succeeded, failed
(FAILED, UPSTREAM_FAILED, or CANCELLED: it produced no result because something broke),
skipped, or not settled yet. :func:`decide` answers with the node's fate:

* ``READY``: the rule is met, launch it;
* ``WAITING``: not decided yet, wait for more parents;
* ``SKIPPED`` / ``UPSTREAM_FAILED``: the rule can no longer be met; the node is settled
  without running, and its own children are decided in turn.

Once every parent is settled a rule always decides (never ``WAITING``). The meanings follow
Airflow's documentation; ``all_done_min_one_success``, whose failure state Airflow leaves
implicit, is settled SKIPPED when every parent was skipped and UPSTREAM_FAILED otherwise.
A rule that needs no parent (``always``) is READY at once.
"""

from __future__ import annotations

import enum

from dyrygent.core.states import NodeState

__all__ = ["ParentCounts", "TriggerRule", "count_parents", "decide"]


class TriggerRule(str, enum.Enum):
    """When a node starts, given its parents' outcomes (Airflow's names and meanings)."""

    ALL_SUCCESS = "all_success"  # every parent succeeded (the default; Celery's rule)
    ALL_FAILED = "all_failed"  # every parent failed or upstream-failed
    ALL_DONE = "all_done"  # every parent settled, whatever the outcome
    ALL_DONE_MIN_ONE_SUCCESS = "all_done_min_one_success"  # all settled, one succeeded
    ALL_SKIPPED = "all_skipped"  # every parent was skipped
    ONE_SUCCESS = "one_success"  # as soon as one parent succeeded
    ONE_FAILED = "one_failed"  # as soon as one parent failed
    ONE_DONE = "one_done"  # as soon as one parent succeeded or failed
    NONE_FAILED = "none_failed"  # all settled, none failed (skipped is fine)
    NONE_FAILED_MIN_ONE_SUCCESS = "none_failed_min_one_success"  # ... and one succeeded
    NONE_SKIPPED = "none_skipped"  # all settled, none skipped
    ALWAYS = "always"  # at once, whatever the parents do

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: object) -> TriggerRule:
        """The rule named ``value``; raises ValueError listing the valid names."""
        if isinstance(value, TriggerRule):
            return value
        try:
            return cls(value)
        except ValueError:
            valid = ", ".join(r.value for r in cls)
            raise ValueError(f"unknown trigger rule {value!r}: use one of {valid}") from None


#: The rules in a fixed order: the codec stores a rule as its index here.
RULES: tuple[TriggerRule, ...] = tuple(TriggerRule)

_SUCCESS = NodeState.SUCCEEDED
_SKIPPED = NodeState.SKIPPED
_FAILED = frozenset({NodeState.FAILED, NodeState.UPSTREAM_FAILED, NodeState.CANCELLED})


class ParentCounts:
    """How many parents are in each outcome class."""

    __slots__ = ("failed", "skipped", "succeeded", "total")

    def __init__(self, total: int, succeeded: int = 0, failed: int = 0, skipped: int = 0):
        self.total = total
        self.succeeded = succeeded
        self.failed = failed
        self.skipped = skipped

    @property
    def settled(self) -> int:
        return self.succeeded + self.failed + self.skipped

    @property
    def all_settled(self) -> bool:
        return self.settled == self.total

    def __repr__(self) -> str:
        return (
            f"ParentCounts(total={self.total}, succeeded={self.succeeded}, "
            f"failed={self.failed}, skipped={self.skipped})"
        )


def count_parents(states: list[int]) -> ParentCounts:
    """Count the parents' outcome classes from their states."""
    succeeded = failed = skipped = 0
    for s in states:
        if s == _SUCCESS:
            succeeded += 1
        elif s == _SKIPPED:
            skipped += 1
        elif s in _FAILED:
            failed += 1
    return ParentCounts(len(states), succeeded, failed, skipped)


_READY = NodeState.READY
_WAIT = NodeState.WAITING
_SKIP = NodeState.SKIPPED
_UPSTREAM = NodeState.UPSTREAM_FAILED


def decide(rule: TriggerRule, c: ParentCounts) -> NodeState:
    """The fate of a WAITING node under ``rule`` with parents counted in ``c``."""
    R = TriggerRule
    done = c.all_settled
    if rule is R.ALL_SUCCESS:
        if c.failed:
            return _UPSTREAM
        if c.skipped:
            return _SKIP
        return _READY if done else _WAIT
    if rule is R.ALWAYS:
        return _READY
    if rule is R.NONE_FAILED or rule is R.NONE_FAILED_MIN_ONE_SUCCESS:
        if c.failed:
            return _UPSTREAM
        if not done:
            return _WAIT
        if rule is R.NONE_FAILED_MIN_ONE_SUCCESS and not c.succeeded:
            return _SKIP
        return _READY
    if rule is R.ONE_SUCCESS:
        if c.succeeded:
            return _READY
        if not done:
            return _WAIT
        return _SKIP if c.skipped == c.total else _UPSTREAM
    if rule is R.ONE_FAILED:
        if c.failed:
            return _READY
        return _SKIP if done else _WAIT
    if rule is R.ONE_DONE:
        if c.succeeded or c.failed:
            return _READY
        return _SKIP if done else _WAIT
    if rule is R.ALL_FAILED:
        if c.succeeded or c.skipped:
            return _SKIP
        return _READY if done else _WAIT
    if rule is R.ALL_SKIPPED:
        if c.succeeded or c.failed:
            return _SKIP
        return _READY if done else _WAIT
    if rule is R.NONE_SKIPPED:
        if c.skipped:
            return _SKIP
        return _READY if done else _WAIT
    if not done:  # ALL_DONE, ALL_DONE_MIN_ONE_SUCCESS
        return _WAIT
    if rule is R.ALL_DONE or c.succeeded:
        return _READY
    return _SKIP if c.skipped == c.total else _UPSTREAM
