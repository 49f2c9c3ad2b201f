"""Every exception dyrygent raises.

::

    DyrygentError
    ├── BuildError                 bad input, raised before anything is published
    │   ├── CycleError             the dependencies form a cycle
    │   ├── UnknownDependencyError a dependency names a node not in the workflow
    │   ├── DuplicateNodeError     two nodes share one task id
    │   ├── UnsupportedCanvasError an object add_celery_canvas() cannot convert
    │   ├── InvalidNodeError       a node whose options dyrygent cannot honour
    │   ├── LimitExceededError     the workflow is larger than a configured limit
    │   ├── DefinitionError        a workflow definition (workflows.yml) cannot be loaded
    │   └── PayloadInvalidError    a run's payload fails its definition's JSON Schema
    ├── PayloadError               stored workflow state that cannot be decoded or trusted
    ├── ConfigurationError         the Celery app cannot run dyrygent as configured
    ├── RenderError                Graphviz's dot is missing, failed or timed out on a picture
    ├── TransientError             a server dyrygent needs failed for now; retry the call later
    │   ├── StoreUnavailableError  the workflow store (Redis, the database) did not answer
    │   └── BrokerUnavailableError the broker did not answer
    ├── BranchError                a branch node chose no child of its own (its result raises it)
    ├── ExpandError                an expand node's input is not a list, or is over a limit
    ├── NodeLostError              a node's worker died more than max_node_relaunches times
    │                              (stored as that node's failure)
    ├── NodeTimeoutError           a node ran past its deadline (add_signature(timeout=...))
    ├── SteeringError              a cancel, retry or forget that cannot be done as asked
    └── WorkflowError              the processor ended a workflow in ERROR (its result raises this)

Every message names the node or call at fault and says how to fix it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BranchError",
    "BrokerUnavailableError",
    "BuildError",
    "ConfigurationError",
    "CycleError",
    "DefinitionError",
    "DuplicateNodeError",
    "DyrygentError",
    "ExpandError",
    "InvalidNodeError",
    "LimitExceededError",
    "NodeLostError",
    "NodeTimeoutError",
    "PayloadError",
    "PayloadInvalidError",
    "RenderError",
    "SteeringError",
    "StoreUnavailableError",
    "TransientError",
    "UnknownDependencyError",
    "UnsupportedCanvasError",
    "WorkflowError",
]


class DyrygentError(Exception):
    """Root of every exception dyrygent raises."""


class BuildError(DyrygentError):
    """A workflow cannot be built as given; nothing was published.

    ``node`` is the task id of the node at fault, when there is one.
    """

    def __init__(self, message: str, node: str | None = None) -> None:
        super().__init__(message)
        self.node = node


class CycleError(BuildError):
    """The dependencies form a cycle; ``cycle`` lists the node ids on it."""

    def __init__(self, message: str, cycle: list[str]) -> None:
        super().__init__(message, node=cycle[0] if cycle else None)
        self.cycle = cycle


class UnknownDependencyError(BuildError):
    """A node depends on a node id that is not in the workflow."""


class DuplicateNodeError(BuildError):
    """Two nodes were given the same task id."""


class UnsupportedCanvasError(BuildError):
    """add_celery_canvas() was given something that is not a Celery canvas."""


class InvalidNodeError(BuildError):
    """A node carries options dyrygent cannot honour (e.g. ``ignore_result=True``)."""


class LimitExceededError(BuildError):
    """The workflow exceeds a configured limit; ``limit`` names it."""

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


class DefinitionError(BuildError):
    """A workflow definition cannot be loaded or run; ``path`` is the YAML path at fault
    (``billing.INVOICE.tasks[1].RENDER.type``), empty for the file as a whole."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


class PayloadInvalidError(BuildError):
    """A payload fails its definition's JSON Schema; ``errors`` lists every violation as
    ``"<where>: <message>"``; nothing was published."""

    def __init__(self, message: str, errors: list[str]) -> None:
        super().__init__(message)
        self.errors = errors


class PayloadError(DyrygentError):
    """Stored workflow data could not be decoded or failed validation.

    ``data`` is a short prefix of the offending bytes, ``error`` the underlying cause.
    """

    def __init__(self, message: str, data: bytes = b"", error: BaseException | None = None) -> None:
        super().__init__(message)
        self.data = data[:64]
        self.error = error


class ConfigurationError(DyrygentError):
    """The Celery app or its backend cannot run dyrygent as configured."""


class TransientError(DyrygentError):
    """A server dyrygent talks to failed in a way that may pass (a lost connection, a
    timeout); ``error`` is the original exception, also chained as ``__cause__``."""

    def __init__(self, message: str, error: BaseException) -> None:
        super().__init__(message)
        self.error = error


class StoreUnavailableError(TransientError):
    """The workflow store (the Redis or database result backend) did not answer."""


class BrokerUnavailableError(TransientError):
    """The broker did not answer (publishing a node or the processor's next tick)."""


class BranchError(DyrygentError):
    """A branch node returned something other than the labels of its children; ``node`` is
    its task id. Raised by the workflow's ``get()`` when that failure decided it."""

    def __init__(self, message: str, node: str | None = None) -> None:
        super().__init__(message)
        self.node = node


class ExpandError(DyrygentError):
    """An expand node could not expand (its input is not a list, or is over a limit); ``node``
    is its task id. Raised by the workflow's ``get()`` when that failure decided it."""

    def __init__(self, message: str, node: str | None = None) -> None:
        super().__init__(message)
        self.node = node


class WorkflowError(DyrygentError):
    """The processor ended the workflow in ERROR; the message says why."""

    def __init__(self, message: str, *args: Any) -> None:
        super().__init__(message, *args)


class RenderError(DyrygentError):
    """A picture could not be drawn: Graphviz's ``dot`` is not installed, failed or timed
    out (:func:`dyrygent.pictures.render`)."""


class SteeringError(DyrygentError):
    """A request to steer a workflow (cancel, retry, forget) that cannot be done as asked:
    the message names the workflow, the node if any, and what to do instead."""


class NodeLostError(DyrygentError):
    """The workers running a node died (or forgot it) more often than the processor's
    ``max_node_relaunches`` allows; stored in the result backend as the node's failure.
    ``node`` is its task id, ``worker`` the last worker seen running it."""

    def __init__(self, message: str, node: str | None = None, worker: str | None = None) -> None:
        super().__init__(message)
        self.node = node
        self.worker = worker


class NodeTimeoutError(DyrygentError):
    """A node was still running ``timeout`` seconds (store clock) after it started; the
    processor revoked it (terminate) and stored this as its failure."""

    def __init__(self, message: str, node: str | None = None, timeout: float = 0.0) -> None:
        super().__init__(message)
        self.node = node
        self.timeout = timeout
