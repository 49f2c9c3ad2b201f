"""What a loaded definition is: steps (tasks, chains, groups), queues, hooks, periodic runs.

Immutable values produced by :mod:`~dyrygent.definitions.loader`; every one carries the YAML
path it came from (``billing.INVOICE.tasks[1].RENDER``) so later errors can name it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

__all__ = ["Chain", "Definition", "Group", "Hooks", "Periodic", "Queues", "Step", "TaskStep"]


@dataclass(frozen=True)
class TaskStep:
    """One task call. ``label`` names it for ``depends_on`` and people (default: the task
    name); ``options`` are Celery apply_async options (queue, countdown, priority, retry
    policy); ``depends_on`` None means "after the previous step"."""

    path: str
    task: str
    label: str
    options: dict[str, Any] = field(default_factory=dict)
    kwargs: dict[str, Any] = field(default_factory=dict)
    trigger_rule: str | None = None
    depends_on: tuple[str, ...] | None = None
    timeout: float | None = None


@dataclass(frozen=True)
class Chain:
    """Steps in sequence: each receives the previous one's result."""

    path: str
    label: str | None
    steps: tuple[Step, ...]
    trigger_rule: str | None = None
    depends_on: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Group:
    """Steps in parallel, each receiving the same input; the result is the list of their
    results in YAML order (a member that is a group is spliced in, as in Celery)."""

    path: str
    label: str | None
    members: tuple[Step, ...]
    trigger_rule: str | None = None
    depends_on: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Expand:
    """Its steps, in sequence, once per item of the previous step's result (a list known only
    at run time); the result is the list of the items' results, in item order."""

    path: str
    label: str | None
    steps: tuple[Step, ...]
    trigger_rule: str | None = None
    depends_on: tuple[str, ...] | None = None


Step = Union[TaskStep, Chain, Group, Expand]


@dataclass(frozen=True)
class Queues:
    """Director's ``queue``: one queue for everything, or a default and per-task customs."""

    default: str | None = None
    customs: dict[str, str] = field(default_factory=dict)

    def for_task(self, task: str) -> str | None:
        """The queue of ``task`` (None: Celery's routing decides, i.e. ``celery``)."""
        return self.customs.get(task, self.default)


@dataclass(frozen=True)
class Hooks:
    """The success and failure hooks (each a task step, or None)."""

    success: TaskStep | None = None
    failure: TaskStep | None = None


@dataclass(frozen=True)
class Periodic:
    """When a definition runs on its own: ``schedule`` is a Celery schedule object
    (``celery.schedules.schedule`` or ``crontab``); ``spec`` the text shown to people."""

    schedule: Any
    spec: str
    payload: dict[str, Any] = field(default_factory=dict)
    overlap: str = "allow"


@dataclass(frozen=True)
class Definition:
    """One workflow definition, ``project.name``; ``raw`` is the mapping as written."""

    fullname: str
    tasks: Chain
    queues: Queues = field(default_factory=Queues)
    hooks: Hooks = field(default_factory=Hooks)
    periodic: Periodic | None = None
    schema_name: str | None = None
    schema: dict[str, Any] | None = None
    retention: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def project(self) -> str:
        return self.fullname.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.fullname.split(".", 1)[1]
