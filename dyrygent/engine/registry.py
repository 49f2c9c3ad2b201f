"""Which processor each Celery app registered: one typed accessor, nothing stashed on the app
or the task."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dyrygent.engine.processor import Processor

__all__ = ["all_processors", "processor_of", "set_processor"]

_PROCESSORS: weakref.WeakKeyDictionary[Any, Processor] = weakref.WeakKeyDictionary()


def processor_of(app: Any) -> Processor | None:
    """The processor registered on ``app`` (None if register_workflow_processor was not
    called on it)."""
    return _PROCESSORS.get(app)


def set_processor(app: Any, processor: Processor) -> None:
    """Record ``processor`` as ``app``'s."""
    _PROCESSORS[app] = processor


def all_processors() -> list[Processor]:
    """Every processor registered in this process (for tools that hook them all)."""
    return list(_PROCESSORS.values())
