"""dyrygent: run big Celery canvases as a flat DAG driven by one processor task.

The names below load on first use (PEP 562), so ``import dyrygent.core`` (the pure core)
never imports Celery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dyrygent.errors import (
    BrokerUnavailableError,
    BuildError,
    ConfigurationError,
    CycleError,
    DuplicateNodeError,
    DyrygentError,
    InvalidNodeError,
    LimitExceededError,
    NodeLostError,
    NodeTimeoutError,
    PayloadError,
    StoreUnavailableError,
    TransientError,
    UnknownDependencyError,
    UnsupportedCanvasError,
    WorkflowError,
)

if TYPE_CHECKING:
    from dyrygent.core.rules import TriggerRule
    from dyrygent.engine.registration import register_workflow_processor
    from dyrygent.workflow import Workflow, WorkflowNode, WorkflowResult

__version__ = "0.2.0"

_LAZY = {
    "TriggerRule": "dyrygent.core.rules",
    "Workflow": "dyrygent.workflow",
    "WorkflowNode": "dyrygent.workflow",
    "WorkflowResult": "dyrygent.workflow",
    "register_workflow_processor": "dyrygent.engine.registration",
}

__all__ = [
    "BrokerUnavailableError",
    "BuildError",
    "ConfigurationError",
    "CycleError",
    "DuplicateNodeError",
    "DyrygentError",
    "InvalidNodeError",
    "LimitExceededError",
    "NodeLostError",
    "NodeTimeoutError",
    "PayloadError",
    "StoreUnavailableError",
    "TransientError",
    "TriggerRule",
    "UnknownDependencyError",
    "UnsupportedCanvasError",
    "Workflow",
    "WorkflowError",
    "WorkflowNode",
    "WorkflowResult",
    "__version__",
    "register_workflow_processor",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dyrygent' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
