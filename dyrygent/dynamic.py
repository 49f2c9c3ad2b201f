"""Signatures for graphs that decide at run time: :class:`expand` (fan-out over a result).

``branch(sig)`` makes ``sig`` a branch node: it returns the label (or labels) of the direct
children to follow, the others are skipped. ``sig.set(trigger_rule="all_done")`` gives a
node a start rule (Airflow's names); dyrygent consumes both options, Celery never sees them.

``expand(canvas)`` runs ``canvas`` once per item of its input, the parent's result known only
at run time: ``chain(list_hosts.s(), expand(check.s()), summarize.s())`` runs one ``check`` per
host and gives ``summarize`` the list of their results, in item order. Item ``i`` is prepended
to the canvas's first tasks as a chain step's result would be. The expanded tasks are real
nodes of the workflow (see :mod:`dyrygent.core.segments`).
"""

from __future__ import annotations

from typing import Any

from celery.canvas import Signature, maybe_signature

__all__ = ["EXPAND_TASK", "branch", "expand"]

#: The task name an expand node carries (no such task runs: the processor expands it).
EXPAND_TASK = "dyrygent.expand"


@Signature.register_type(name="dyrygent_expand")
class expand(Signature):  # noqa: N801 (a signature, named like Celery's xmap and chord)
    """Run ``canvas`` (a signature or any canvas) once per item of the parent's result."""

    def __init__(self, canvas: Any = None, **options: Any) -> None:
        if canvas is None:
            raise TypeError("expand() needs the canvas to run per item, e.g. expand(check.s())")
        super().__init__(
            EXPAND_TASK, (), {"canvas": canvas}, options, subtask_type="dyrygent_expand"
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any], app: Any = None) -> expand:
        """The expand a dict (a serialized canvas) describes."""
        return cls(maybe_signature(d["kwargs"]["canvas"], app=app), **(d.get("options") or {}))

    @property
    def canvas(self) -> Any:
        return self.kwargs["canvas"]


def branch(sig: Signature) -> Signature:
    """A copy of ``sig`` that runs as a branch node: its result (a child's label, or a list)
    says which of its direct children run; the others are SKIPPED."""
    return sig.clone().set(dyrygent_branch=True)
