"""The tasks definitions need on workers, and beat's automatic schedule.

``register_workflow_processor(app)`` calls :func:`register_definition_tasks`, so every
worker that runs dyrygent has them:

* ``dyrygent.definitions.run(name)``: beat's entry point, a periodic run of ``name`` (with
  its periodic payload, validated, and its overlap policy), from ``app.conf.dyrygent_definitions``;
* ``dyrygent.definitions.failure_info``: the failed step of a run, for the failure hook;
* ``dyrygent.definitions.result``: the run's result when other leaves are waited for too.

With ``app.conf.dyrygent_beat = True`` a ``celery beat`` started on the app adds one entry
per periodic definition itself (see :func:`~dyrygent.definitions.beat_schedule`).
"""

from __future__ import annotations

import logging
import weakref
from typing import Any

from celery.signals import beat_init

from dyrygent.definitions.builder import FAILURE_INFO_TASK, RESULT_TASK
from dyrygent.definitions.periodic import RUN_TASK, beat_entries

__all__ = ["beat_schedule", "definitions_of", "register_definition_tasks"]

logger = logging.getLogger("dyrygent.definitions")
_loaded: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_registered: weakref.WeakSet[Any] = weakref.WeakSet()


def definitions_of(app: Any) -> Any:
    """The Definitions of ``app.conf.dyrygent_definitions``, loaded once per process."""
    defs = _loaded.get(app)
    if defs is None:
        from dyrygent.definitions.loader import load_definitions

        defs = _loaded[app] = load_definitions(app=app)
    return defs


def beat_schedule(app: Any, definitions: Any = None) -> dict[str, dict[str, Any]]:
    """Add one Celery beat entry per periodic definition to ``app.conf.beat_schedule`` and
    return them; ``definitions`` default to ``app.conf.dyrygent_definitions``'s. Each entry
    sends ``dyrygent.definitions.run`` with the definition's name. Call it where beat
    imports the app, or set ``app.conf.dyrygent_beat = True``."""
    entries = beat_entries(definitions if definitions is not None else definitions_of(app))
    schedule = dict(app.conf.beat_schedule or {})
    schedule.update(entries)
    app.conf.beat_schedule = schedule
    return entries


def failure_info(steps: list[list[str]], app: Any) -> dict[str, Any]:
    """The first failed step of ``steps`` ([id, label, task] in definition order) as
    ``{label, id, task, error, error_type}`` (all None if none failed on its own)."""
    from celery import states

    from dyrygent.engine.results import exception_of, read_metas

    metas = read_metas(app.backend, [s[0] for s in steps])
    for (node_id, label, task), meta in zip(steps, metas):
        if meta.get("status") in (states.FAILURE, states.REVOKED):
            exc = exception_of(meta, node_id)
            return {
                "label": label,
                "id": node_id,
                "task": task,
                "error": f"{type(exc).__name__}: {exc}",
                "error_type": type(exc).__name__,
            }
    return {"label": None, "id": None, "task": None, "error": None, "error_type": None}


def register_definition_tasks(app: Any) -> None:
    """Register the definitions' tasks on ``app`` (once), and the automatic beat schedule."""
    if app in _registered:
        return
    _registered.add(app)

    @app.task(name=RUN_TASK, shared=False)
    def run(name: str) -> str | None:
        result = definitions_of(app).run_periodic(name, app)
        return None if result is None else result.id

    @app.task(name=FAILURE_INFO_TASK, shared=False)
    def info(*_: Any, steps: list[list[str]], workflow_id: str = "") -> dict[str, Any]:
        return failure_info(steps, app)

    @app.task(name=RESULT_TASK, shared=False)
    def result(values: list[Any], ends: int = 1) -> Any:
        return values[0] if ends == 1 else list(values[:ends])

    def add_entries(sender: Any = None, **_: Any) -> None:
        if not app.conf.get("dyrygent_beat") or getattr(sender, "app", None) is not app:
            return
        try:
            entries = beat_entries(definitions_of(app))
        except Exception:
            logger.exception("dyrygent: cannot add the periodic definitions to beat")
            raise
        sender.scheduler.update_from_dict(entries)
        logger.info("dyrygent: beat runs %s", ", ".join(sorted(entries)) or "nothing")

    beat_init.connect(add_entries, weak=False)
