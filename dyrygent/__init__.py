"""dyrygent: run big Celery canvases as a flat DAG driven by one processor task.

The names below load on first use (PEP 562), so ``import dyrygent.core`` (the pure core)
never imports Celery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dyrygent.errors import (
    BranchError,
    BrokerUnavailableError,
    BuildError,
    ConfigurationError,
    CycleError,
    DefinitionError,
    DuplicateNodeError,
    DyrygentError,
    ExpandError,
    InvalidNodeError,
    LimitExceededError,
    NodeLostError,
    NodeTimeoutError,
    PayloadError,
    PayloadInvalidError,
    RenderError,
    SteeringError,
    StoreUnavailableError,
    TransientError,
    UnknownDependencyError,
    UnsupportedCanvasError,
    WorkflowError,
)

if TYPE_CHECKING:
    from dyrygent.core.rules import TriggerRule
    from dyrygent.definitions import beat_schedule, load_definitions
    from dyrygent.dynamic import branch, expand
    from dyrygent.engine.registration import register_workflow_processor
    from dyrygent.info import HistoryEvent, NodeInfo, Progress, WorkflowInfo
    from dyrygent.result import list_workflows
    from dyrygent.workflow import (
        EagerWorkflowResult,
        Workflow,
        WorkflowGroupResult,
        WorkflowNode,
        WorkflowResult,
    )

__version__ = "0.2.0"

_LAZY = {
    "expand": "dyrygent.dynamic",
    "branch": "dyrygent.dynamic",
    "HistoryEvent": "dyrygent.info",
    "NodeInfo": "dyrygent.info",
    "Progress": "dyrygent.info",
    "WorkflowInfo": "dyrygent.info",
    "list_workflows": "dyrygent.result",
    "EagerWorkflowResult": "dyrygent.workflow",
    "TriggerRule": "dyrygent.core.rules",
    "Workflow": "dyrygent.workflow",
    "WorkflowNode": "dyrygent.workflow",
    "WorkflowResult": "dyrygent.workflow",
    "WorkflowGroupResult": "dyrygent.workflow",
    "beat_schedule": "dyrygent.definitions",
    "load_definitions": "dyrygent.definitions",
    "register_workflow_processor": "dyrygent.engine.registration",
}

__all__ = [
    "BranchError",
    "BrokerUnavailableError",
    "BuildError",
    "ConfigurationError",
    "CycleError",
    "DefinitionError",
    "DuplicateNodeError",
    "DyrygentError",
    "EagerWorkflowResult",
    "ExpandError",
    "HistoryEvent",
    "InvalidNodeError",
    "LimitExceededError",
    "NodeInfo",
    "NodeLostError",
    "NodeTimeoutError",
    "PayloadError",
    "PayloadInvalidError",
    "Progress",
    "RenderError",
    "SteeringError",
    "StoreUnavailableError",
    "TransientError",
    "TriggerRule",
    "UnknownDependencyError",
    "UnsupportedCanvasError",
    "Workflow",
    "WorkflowError",
    "WorkflowGroupResult",
    "WorkflowInfo",
    "WorkflowNode",
    "WorkflowResult",
    "__version__",
    "beat_schedule",
    "branch",
    "expand",
    "list_workflows",
    "load_definitions",
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
