"""celery-dyrygent's ``celery_dyrygent.tasks``, for migrating users: change the import.

``register_workflow_processor(app)`` registers dyrygent's processor (the task
``dyrygent.processor``), with the celery-dyrygent compatibility of
:mod:`dyrygent.workflows` (its hooks and per-workflow backup tick bounds). With
``adopt_celery_dyrygent=True`` it also registers a task under celery-dyrygent's processor name
(``workflow-processor``) that adopts the workflows celery-dyrygent was running: README,
"Migrating from celery-dyrygent".
"""

from __future__ import annotations

from typing import Any

from dyrygent.compat.adopt import CELERY_DYRYGENT_PROCESSOR, register_adopter
from dyrygent.compat.hooks import install
from dyrygent.compat.processor import CompatProcessor
from dyrygent.engine.registration import register_workflow_processor as _register
from dyrygent.engine.registry import processor_of

__all__ = ["CELERY_DYRYGENT_PROCESSOR", "register_workflow_processor"]


def register_workflow_processor(
    app: Any, adopt_celery_dyrygent: bool = False, **task_options: Any
) -> Any:
    """Register dyrygent's processor on ``app`` and return its task, as
    :func:`dyrygent.register_workflow_processor` (same ``task_options``), plus
    celery-dyrygent's hooks and backup tick bounds. Call once, in a module the workers
    import; a second call returns the task registered first.

    ``adopt_celery_dyrygent=True``: also register ``workflow-processor``, which adopts the
    workflows celery-dyrygent 0.8.0 was running when you upgraded. Raises ConfigurationError
    as dyrygent's does (an app that accepts pickle).
    """
    first = processor_of(app) is None
    task = _register(app, processor_class=CompatProcessor, **task_options)
    processor = processor_of(app)
    assert processor is not None  # (registered just above)
    if first:
        install(processor)
    if adopt_celery_dyrygent:
        register_adopter(app, processor)
    return task
