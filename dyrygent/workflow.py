"""Workflow: build a graph from canvases and signatures, then publish it to the processor."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from celery import current_app
from celery.canvas import Signature
from celery.utils import uuid

from dyrygent.core.codec import encode_graph
from dyrygent.core.graph import Expr, Graph, GraphBuilder
from dyrygent.engine.canvas import CanvasConverter
from dyrygent.engine.spec import encode_header, encode_spec
from dyrygent.engine.trust import seal
from dyrygent.engine.wake import PROCESSOR_NAME, join_counters
from dyrygent.errors import ConfigurationError, LimitExceededError
from dyrygent.result import (
    Dependency,
    WorkflowGroupResult,
    WorkflowNode,
    WorkflowResult,
    workflow_result,
)

__all__ = ["Workflow", "WorkflowGroupResult", "WorkflowNode", "WorkflowResult"]

#: A workflow still running after this many seconds ends in ERROR (7 days).
DEFAULT_MAX_AGE = 7 * 24 * 3600
DEFAULT_MAX_NODES = 100_000
#: The largest encoded graph a workflow may store.
DEFAULT_MAX_BYTES = 64 * 2**20


class Workflow:
    """A DAG of Celery task calls, run by the dyrygent processor.

    ``options`` are apply_async options for the processor task (queue, priority, ...).
    ``max_nodes`` and ``max_bytes`` cap the graph's node count and encoded size (checked
    before anything is published); ``max_age`` (seconds, measured on the store's clock) ends a
    workflow still running after it in ERROR.
    """

    def __init__(
        self,
        options: dict | None = None,
        *,
        app: Any = None,
        max_nodes: int = DEFAULT_MAX_NODES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_age: int = DEFAULT_MAX_AGE,
    ) -> None:
        self.options = dict(options or {})
        self.max_nodes = max_nodes
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.id = uuid()
        self._app = app
        self._builder = GraphBuilder()
        self._output: Expr = None
        self._nodes: list[WorkflowNode] = []

    @property
    def app(self) -> Any:
        return self._app or current_app

    @property
    def nodes(self) -> list[WorkflowNode]:
        return list(self._nodes)

    def _converter(self, first: Any) -> CanvasConverter:
        if self._app is None and isinstance(first, Signature):
            # .app resolves a group's or chord's app from its tasks, as native apply_async does
            self._app = first.app
        app = self.app

        def is_ignored(name: str) -> bool:
            task = app.tasks.get(name) if app.configured else None
            return bool(task is not None and getattr(task, "ignore_result", False))

        return CanvasConverter(self._builder, encode_spec, app=app, is_ignored=is_ignored)

    @staticmethod
    def _dep_ids(dependencies: Iterable[Dependency] | Dependency | None) -> tuple[str, ...]:
        if dependencies is None:
            return ()
        if isinstance(dependencies, (WorkflowNode, str)):
            dependencies = [dependencies]
        return tuple(d.id if isinstance(d, WorkflowNode) else str(d) for d in dependencies)

    def _add(
        self,
        canvas: Any,
        dependencies: Iterable[Dependency] | Dependency | None,
        args: Sequence[Any] = (),
        kwargs: dict | None = None,
    ) -> list[WorkflowNode]:
        deps = self._dep_ids(dependencies)
        incoming: Expr = None
        if len(deps) == 1:
            incoming = deps[0]
        elif deps:
            incoming = list(deps)
        before = len(self._builder)
        output, ends = self._converter(canvas).convert(
            canvas, incoming, deps, pre_args=tuple(args), pre_kwargs=kwargs
        )
        self._output = output
        self._nodes.extend(self._builder_nodes(before))
        self._check_size()
        index = {n.id: n for n in self._nodes}
        return [index[e] for e in ends if e in index]

    def _builder_nodes(self, start: int) -> list[WorkflowNode]:
        return [WorkflowNode(i, t) for i, t in self._builder.entries(start)]

    def _check_size(self) -> None:
        if len(self._builder) > self.max_nodes:
            raise LimitExceededError(
                f"the workflow has {len(self._builder)} nodes, over max_nodes={self.max_nodes}: "
                f"split it, or raise Workflow(max_nodes=...)",
                limit="max_nodes",
            )

    def add_celery_canvas(
        self,
        canvas: Any,
        dependencies: Iterable[Dependency] | Dependency | None = None,
        args: Sequence[Any] = (),
        kwargs: dict | None = None,
    ) -> list[WorkflowNode]:
        """Add a signature, chain, group, chord or chunks (nested to any depth).

        Its first tasks wait for ``dependencies`` and receive their results (one dependency:
        its result; several: the list, in the order given). ``args`` are partial args for the
        whole canvas, as in ``canvas.apply_async(args=...)``: prepended to its first tasks';
        ``kwargs`` likewise partial kwargs, merged into theirs (``kwargs`` win).
        Returns the nodes the canvas ends in; the workflow's result becomes this canvas's.
        Raises a BuildError subclass naming the node at fault.
        """
        return self._add(canvas, dependencies, args, kwargs)

    def add_signature(
        self, signature: Signature, dependencies: Iterable[Dependency] | Dependency | None = None
    ) -> WorkflowNode:
        """Add one task call that runs after ``dependencies``; returns its node."""
        return self._add(signature, dependencies)[0]

    def freeze(self) -> Graph:
        """Validate the graph (cycles, unknown dependencies) and return it."""
        return self._builder.freeze(self._output)

    def apply_async(self, options: dict | None = None) -> WorkflowResult | WorkflowGroupResult:
        """Validate, store and start the workflow; ``options`` apply to every node. Returns
        a handle shaped like the canvas's native result (see dyrygent.result)."""
        graph = self.freeze()
        app = self.app
        registered = getattr(app, "_dyrygent_processor", None)
        if registered is None:
            raise ConfigurationError(
                f"no dyrygent processor is registered on app {app.main!r}: call "
                f"dyrygent.register_workflow_processor(app) in a module the workers import"
            )
        processor = registered._dyrygent
        header = {
            "version": 1,
            "node_options": dict(options or {}),
            "processor_options": self.options,
        }
        data = encode_graph(graph)
        if len(data) > self.max_bytes:
            raise LimitExceededError(
                f"the workflow's graph encodes to {len(data)} bytes, over max_bytes="
                f"{self.max_bytes}: pass smaller arguments (e.g. keys instead of data), split "
                f"the workflow, or raise Workflow(max_bytes=...)",
                limit="max_bytes",
            )
        processor.store.create(
            self.id,
            data,
            seal(app, data, encode_header(header)),
            len(graph),
            self.max_age,
            joins=join_counters(graph),
        )
        # The driver goes first, as the backup; then this client launches the roots itself,
        # holding the workflow under an id of its own (if it dies, the driver takes over
        # after the lease; under the driver's id, a slow first tick would look like a crash).
        app.send_task(
            PROCESSOR_NAME, (self.id, 0), {}, countdown=processor.max_interval, **self.options
        )
        processor.tick_here(self.id, f"client-{uuid()}", gen=0, loaded=(graph, header))
        return workflow_result(self.id, app, self._nodes, graph)
