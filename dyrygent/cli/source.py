"""The CLI's one door to the result API: ``WorkflowResult(id, app=app)`` and
``dyrygent.list_workflows``, turned into the plain views the commands print.

Every other CLI module works on :class:`WorkflowView`, :class:`NodeView` and
:class:`EventView`, so a change in the result API's field names is a change here only.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from dyrygent.engine.stores import store_for
from dyrygent.result import WorkflowResult, list_workflows

__all__ = [
    "ENDED",
    "EventView",
    "NodeView",
    "WorkflowView",
    "events",
    "is_known",
    "listing",
    "result_of",
    "view",
]

#: Workflow states after which nothing changes (unless it is retried).
ENDED = frozenset({"SUCCESS", "FAILURE", "ERROR", "CANCELLED"})


@dataclass(frozen=True)
class NodeView:
    """One node as the CLI shows it; times are seconds since the epoch (store clock)."""

    id: str
    label: str
    task: str
    state: str
    started_at: float | None = None
    ended_at: float | None = None
    attempts: int = 0
    error: dict[str, str] | None = None


@dataclass(frozen=True)
class WorkflowView:
    """One workflow as the CLI shows it (``nodes`` empty in listings)."""

    id: str
    state: str
    created: float | None
    ended: float | None
    counts: dict[str, int]
    done: int
    total: int
    nodes: tuple[NodeView, ...] = field(default=())

    @property
    def ended_now(self) -> bool:
        return self.state in ENDED

    def as_json(self) -> dict[str, Any]:
        """The object ``show --json`` prints."""
        return {
            "id": self.id,
            "state": self.state,
            "counts": self.counts,
            "progress": {"done": self.done, "total": self.total},
            "nodes": [
                {
                    "id": n.id,
                    "label": n.label,
                    "task": n.task,
                    "state": n.state,
                    "started_at": n.started_at,
                    "ended_at": n.ended_at,
                    "error": n.error,
                }
                for n in self.nodes
            ],
        }


@dataclass(frozen=True)
class EventView:
    """A node's state change at ``at`` (seconds since the epoch, store clock)."""

    node: str
    old: str
    new: str
    at: float


def _name(state: Any) -> str:
    """A state's name, whether the API gives an enum or its text."""
    return str(getattr(state, "name", state))


def _seconds(t: Any) -> float | None:
    if t is None:
        return None
    if isinstance(t, datetime.datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=datetime.timezone.utc)
        stamp: float = t.timestamp()
        return stamp
    return float(t)


def _field(obj: Any, name: str, index: int) -> Any:
    return getattr(obj, name) if hasattr(obj, name) else obj[index]


def result_of(app: Any, wf: str) -> WorkflowResult:
    """The workflow's result handle (read from the store by id)."""
    return WorkflowResult(wf, app=app)


def is_known(app: Any, wf: str) -> bool:
    """Whether the store holds ``wf`` (one read); false for an expired or forgotten one."""
    return store_for(app).status(wf).status is not None


def _view(info: Any) -> WorkflowView:
    progress = info.progress
    return WorkflowView(
        id=info.id,
        state=_name(info.state),
        created=_seconds(info.created),
        ended=_seconds(info.ended),
        counts={_name(k): int(v) for k, v in dict(info.counts).items() if v},
        done=int(progress.done),
        total=int(progress.total),
        nodes=tuple(
            NodeView(
                n.id,
                n.label or n.task,
                n.task,
                _name(n.state),
                _seconds(n.started_at),
                _seconds(n.ended_at),
                int(n.attempts or 0),
                dict(n.error) if n.error else None,
            )
            for n in (info.nodes or ())
        ),
    )


def view(result: Any) -> WorkflowView:
    """The workflow's state now, with its nodes (one ``info()`` call)."""
    return _view(result.info())


def events(result: Any) -> list[EventView]:
    """Every node state change, in commit order."""
    return [
        EventView(
            str(_field(e, "node", 0)),
            _name(_field(e, "old", 1)),
            _name(_field(e, "new", 2)),
            float(_seconds(_field(e, "at", 3)) or 0.0),
        )
        for e in result.history()
    ]


def listing(app: Any, state: str | None, limit: int) -> list[WorkflowView]:
    """The newest ``limit`` workflows, optionally only those in ``state``."""
    return [_view(i) for i in list_workflows(app, state=state, limit=limit)]
