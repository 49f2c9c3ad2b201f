"""dyrygent: run big Celery canvases as a flat DAG driven by one processor task."""

from __future__ import annotations

from dyrygent.engine.registration import register_workflow_processor
from dyrygent.errors import (
    BuildError,
    ConfigurationError,
    CycleError,
    DuplicateNodeError,
    DyrygentError,
    InvalidNodeError,
    LimitExceededError,
    PayloadError,
    UnknownDependencyError,
    UnsupportedCanvasError,
    WorkflowError,
)
from dyrygent.workflow import Workflow, WorkflowGroupResult, WorkflowNode, WorkflowResult

__version__ = "0.1.0"

__all__ = [
    "BuildError",
    "ConfigurationError",
    "CycleError",
    "DuplicateNodeError",
    "DyrygentError",
    "InvalidNodeError",
    "LimitExceededError",
    "PayloadError",
    "UnknownDependencyError",
    "UnsupportedCanvasError",
    "Workflow",
    "WorkflowError",
    "WorkflowGroupResult",
    "WorkflowNode",
    "WorkflowResult",
    "__version__",
    "register_workflow_processor",
]
