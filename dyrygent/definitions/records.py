"""Run records: which definition and payload each run had, and each definition's recent runs.

Until workflows carry custom data of their own, dyrygent keeps two small records in the
result backend, written as task results in a state of their own, ``DYRYGENT_RECORD`` (so
every backend Celery supports holds them, and they expire with ``result_expires``):

* ``dyrygent-def-run-<workflow id>``: ``{"definition", "payload", "periodic"}``, read by
  :meth:`Definitions.relaunch`;
* ``dyrygent-def-runs-<project.name>``: the ids of the definition's recent runs, oldest
  first, read by the overlap check and pruned by ``retention``.

The list is read, changed and written back, not updated atomically: two runs of one
definition started in the same instant may lose one entry (beat starts them one at a time).
"""

from __future__ import annotations

from typing import Any

from dyrygent.core.states import WorkflowStatus
from dyrygent.engine.stores import store_for

__all__ = ["add_run", "forget_run", "is_running", "load_run", "recent_runs", "save_run"]

#: The records' task state: not a ready state, since Celery never overwrites a SUCCESS.
RECORD_STATE = "DYRYGENT_RECORD"
#: Run ids tracked per definition without ``retention`` (older ids leave the list, and their
#: records expire with ``result_expires``).
MAX_TRACKED = 1000
RUN_PREFIX = "dyrygent-def-run-"
LIST_PREFIX = "dyrygent-def-runs-"


def _get(app: Any, key: str) -> Any:
    meta = app.backend.get_task_meta(key, cache=False)
    return meta.get("result") if meta.get("status") == RECORD_STATE else None


def _put(app: Any, key: str, value: Any) -> None:
    app.backend.store_result(key, value, RECORD_STATE)


def save_run(app: Any, wf: str, name: str, payload: dict[str, Any], periodic: bool) -> None:
    """Record that run ``wf`` is of definition ``name`` with ``payload``."""
    _put(app, RUN_PREFIX + wf, {"definition": name, "payload": payload, "periodic": periodic})


def load_run(app: Any, wf: str) -> dict[str, Any] | None:
    """The record of run ``wf`` (None if unknown, forgotten or expired)."""
    value = _get(app, RUN_PREFIX + wf)
    return value if isinstance(value, dict) else None


def recent_runs(app: Any, name: str) -> list[str]:
    """The ids of ``name``'s recent runs, oldest first."""
    value = _get(app, LIST_PREFIX + name)
    return [str(v) for v in value] if isinstance(value, list) else []


def is_running(app: Any, wf: str) -> bool:
    """Whether run ``wf`` is stored and still running."""
    return store_for(app).status(wf).status is WorkflowStatus.RUNNING


def forget_run(app: Any, wf: str) -> None:
    """Delete every record of run ``wf``: its workflow, its result and its run record."""
    store_for(app).forget(wf)
    app.backend.forget(wf)
    app.backend.forget(RUN_PREFIX + wf)


def add_run(app: Any, name: str, wf: str, keep: int | None) -> list[str]:
    """Append ``wf`` to ``name``'s runs; with ``keep``, forget the finished runs older than
    the last ``keep`` (a run still going is kept). Returns the ids forgotten."""
    runs = [r for r in recent_runs(app, name) if r != wf] + [wf]
    dropped: list[str] = []
    if keep is not None and len(runs) > keep:
        old, runs = runs[:-keep], runs[-keep:]
        going = []
        for r in old:
            if is_running(app, r):
                going.append(r)
            else:
                forget_run(app, r)
                dropped.append(r)
        runs = going + runs
    _put(app, LIST_PREFIX + name, runs[-MAX_TRACKED:])
    return dropped
