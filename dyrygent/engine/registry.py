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
    called on it). ``app`` may be Celery's ``current_app`` proxy."""
    return _PROCESSORS.get(_real(app))


def set_processor(app: Any, processor: Processor) -> None:
    """Record ``processor`` as ``app``'s."""
    _PROCESSORS[_real(app)] = processor


def all_processors() -> list[Processor]:
    """Every processor registered in this process (for tools that hook them all)."""
    return list(_PROCESSORS.values())


def _real(app: Any) -> Any:
    """The app behind a proxy such as ``celery.current_app`` (proxies cannot be weakly
    referenced)."""
    get = getattr(app, "_get_current_object", None)
    return get() if get is not None else app
