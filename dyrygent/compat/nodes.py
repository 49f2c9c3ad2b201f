"""celery-dyrygent's WorkflowNode: dyrygent's node with ``signature``, ``dependencies`` and
``custom_payload`` (see :mod:`dyrygent.workflows`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery.canvas import Signature

from dyrygent.engine.spec import decode_spec
from dyrygent.workflow import WorkflowNode as _WorkflowNode

if TYPE_CHECKING:
    from dyrygent.workflows import Workflow

__all__ = ["WorkflowNode"]


class WorkflowNode(_WorkflowNode):
    """A node: dyrygent's (``id``, ``task``, ``label``) plus celery-dyrygent's ``signature``
    (the task call it makes), ``dependencies`` (parent id -> None) and ``custom_payload``."""

    def __init__(self, id: str, task: str, label: str, workflow: Workflow, position: int):
        super().__init__(id, task, label)
        self.custom_payload: dict[str, Any] = {}
        self._workflow = workflow
        self._position = position

    def _call(self) -> list[Any]:
        spec = self._workflow.freeze_with_inputs().nodes[self._position].spec
        return list(decode_spec(spec))

    def signature_dict(self, call: list[Any] | None = None) -> dict[str, Any]:
        args, kwargs, options = (call or self._call())[:3]
        return {
            "task": self.task,
            "args": list(args),
            "kwargs": dict(kwargs),
            "options": {**options, "task_id": self.id},
            "subtask_type": None,
            "immutable": False,
        }

    @property
    def signature(self) -> Signature:
        """The node's task call as a signature (its task id is the node's id)."""
        return Signature(self.signature_dict(), app=self._workflow.app)

    @property
    def dependencies(self) -> dict[str, None]:
        """The ids of the nodes it waits for (celery-dyrygent's dict: id -> None)."""
        return dict.fromkeys(self._workflow._builder.parents_of(self._position))

    def to_dict(self) -> dict[str, Any]:
        """celery-dyrygent's node dict: id, signature, dependencies, custom_payload."""
        return {
            "id": self.id,
            "signature": self.signature_dict(),
            "dependencies": self.dependencies,
            "custom_payload": self.custom_payload,
        }
