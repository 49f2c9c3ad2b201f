"""Workflow: build a graph from canvases and signatures, then publish it to the processor."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Union

from celery import current_app
from celery.canvas import Signature
from celery.result import AsyncResult
from celery.utils import uuid

from dyrygent.core.graph import Expr, Graph, GraphBuilder, NodeState
from dyrygent.core.rules import TriggerRule
from dyrygent.engine.canvas import CanvasConverter
from dyrygent.engine.registry import processor_of
from dyrygent.engine.spec import Header, encode_spec, with_extras
from dyrygent.engine.stores import store_for
from dyrygent.errors import BuildError, ConfigurationError, InvalidNodeError, LimitExceededError

__all__ = ["Workflow", "WorkflowNode", "WorkflowResult"]

#: A workflow still running after this many seconds ends in ERROR (7 days).
DEFAULT_MAX_AGE = 7 * 24 * 3600
DEFAULT_MAX_NODES = 100_000
#: The largest encoded graph a workflow may store.
DEFAULT_MAX_BYTES = 64 * 2**20


@dataclass(frozen=True)
class WorkflowNode:
    """A node of a workflow: its task id (``AsyncResult(node.id)`` works), task name and
    label (the task name unless one was given)."""

    id: str
    task: str
    label: str = ""


Dependency = Union[WorkflowNode, str]


class WorkflowResult(AsyncResult):
    """The workflow's own result: ``get()`` returns what the canvas would natively return,
    or raises the failed node's exception. ``id`` is the workflow id."""

    def __init__(self, id: str, app: Any = None, nodes: Sequence[WorkflowNode] = ()) -> None:
        super().__init__(id, app=app)
        self.nodes = list(nodes)

    def node(self, node: Dependency) -> AsyncResult:
        """The AsyncResult of one node."""
        return AsyncResult(node.id if isinstance(node, WorkflowNode) else node, app=self.app)

    def states(self) -> dict[str, str]:
        """Each node's state as the processor last recorded it (WAITING, READY, LAUNCHED,
        SUCCEEDED, FAILED), by node id, in graph order; one read of the store."""
        raw = store_for(self.app).status(self.id).states
        return {
            n.id: NodeState(raw[i]).name if i < len(raw) else "UNKNOWN"
            for i, n in enumerate(self.nodes)
        }


class Workflow:
    """A DAG of Celery task calls, run by the dyrygent processor.

    ``options`` are apply_async options for the processor task (queue, priority, ...).
    ``max_nodes`` and ``max_bytes`` cap the graph's node count and encoded size (checked
    before anything is published); ``max_age`` (seconds, measured on the store's clock) ends a
    workflow still running after it in ERROR. ``fail_fast``: the first failed node ends the
    workflow at once (nothing more is launched; by default independent branches go on, as
    they do in a native canvas).
    """

    def __init__(
        self,
        options: dict | None = None,
        *,
        app: Any = None,
        max_nodes: int = DEFAULT_MAX_NODES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_age: int = DEFAULT_MAX_AGE,
        fail_fast: bool = False,
    ) -> None:
        self.options = dict(options or {})
        self.fail_fast = fail_fast
        self._started = False
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
        *,
        label: str | None = None,
        prefix: bool = True,
        trigger_rule: TriggerRule | str | None = None,
        timeout: float | None = None,
    ) -> list[WorkflowNode]:
        deps = self._dep_ids(dependencies)
        incoming: Expr = None
        if len(deps) == 1:
            incoming = deps[0]
        elif deps:
            incoming = list(deps)
        before = len(self._builder)
        output, ends = self._converter(canvas).convert(canvas, incoming, deps, pre_args=tuple(args))
        self._output = output
        builder = self._builder
        if label is not None:
            for position in range(before, len(builder)):
                own = builder.label_of(position) or builder.entries(position)[0][1]
                builder.set_label(position, f"{label}/{own}" if prefix else label)
        if trigger_rule is not None:
            self._set_rule(before, deps, trigger_rule)
        if timeout is not None:
            self._set_timeout(before, timeout)
        self._nodes.extend(self._builder_nodes(before))
        self._check_size()
        index = {n.id: n for n in self._nodes}
        return [index[e] for e in ends if e in index]

    def _set_rule(self, start: int, deps: tuple[str, ...], rule: TriggerRule | str) -> None:
        """Give the canvas's first nodes (those after ``deps``, or its roots) ``rule``."""
        builder = self._builder
        for position in range(start, len(builder)):
            node_id, task = builder.entries(position)[0]
            parents = builder.parents_of(position)
            if not (set(parents) & set(deps) if deps else not parents):
                continue
            try:
                builder.set_rule(node_id, TriggerRule.parse(rule))
            except ValueError as exc:
                raise InvalidNodeError(f"node {node_id!r} ({task}): {exc}", node=node_id)

    def _set_timeout(self, start: int, timeout: float) -> None:
        """Give every node added since ``start`` a deadline of ``timeout`` seconds."""
        builder = self._builder
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            node_id, task = builder.entries(start)[0]
            raise InvalidNodeError(
                f"node {node_id!r} ({task}): timeout={timeout!r} is not a number of seconds "
                f"above 0",
                node=node_id,
            )
        for position in range(start, len(builder)):
            spec = builder.spec_of(position)
            builder.set_spec(position, with_extras(spec, timeout=float(timeout)))

    def _builder_nodes(self, start: int) -> list[WorkflowNode]:
        b = self._builder
        return [
            WorkflowNode(i, t, b.label_of(start + k) or t)
            for k, (i, t) in enumerate(b.entries(start))
        ]

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
        *,
        label: str | None = None,
        trigger_rule: TriggerRule | str | None = None,
        timeout: float | None = None,
    ) -> list[WorkflowNode]:
        """Add a signature, chain, group, chord or chunks (nested to any depth).

        Its first tasks wait for ``dependencies`` and receive their results (one dependency:
        its result; several: the list, in the order given). ``args`` are partial args for the
        whole canvas, as in ``canvas.apply_async(args=...)``: prepended to its first tasks'.
        Returns the nodes the canvas ends in; the workflow's result becomes this canvas's.
        ``label`` prefixes its nodes' labels (``"etl/tasks.add"``); ``trigger_rule`` is the
        start rule of its first nodes (default ``all_success``); ``timeout`` gives each of its
        nodes a deadline (see :meth:`add_signature`).
        Raises a BuildError subclass naming the node at fault.
        """
        return self._add(
            canvas, dependencies, args, label=label, trigger_rule=trigger_rule, timeout=timeout
        )

    def add_signature(
        self,
        signature: Signature,
        dependencies: Iterable[Dependency] | Dependency | None = None,
        *,
        label: str | None = None,
        trigger_rule: TriggerRule | str | None = None,
        timeout: float | None = None,
    ) -> WorkflowNode:
        """Add one task call that runs after ``dependencies``; returns its node.

        ``label`` names it for people (default: its task name); ``trigger_rule`` says when
        it starts given its dependencies' outcomes (default ``all_success``); an unknown
        rule raises InvalidNodeError naming the node and the valid rules. ``timeout``: a
        node still running that many seconds after it started (by the store's clock) is
        revoked (terminated) and fails with NodeTimeoutError; checked by the processor when
        the node runs on a worker that registered it (Celery's ``time_limit`` is the
        worker-side tool). Raises InvalidNodeError for a timeout that is not above 0.
        """
        nodes = self._add(
            signature,
            dependencies,
            label=label,
            prefix=False,
            trigger_rule=trigger_rule,
            timeout=timeout,
        )
        return nodes[0]

    def freeze(self) -> Graph:
        """Validate the graph (cycles, unknown dependencies) and return it."""
        return self._builder.freeze(self._output)

    def apply_async(self, options: dict[str, Any] | None = None) -> WorkflowResult:
        """Validate, store and start the workflow; ``options`` apply to every node.

        Raises BuildError for an empty graph or a workflow already started, PayloadError for
        a node the workers would refuse (an unknown task, a pickle serializer), before
        anything is stored or published.
        """
        if self._started:
            raise BuildError(
                f"workflow {self.id} was already started: a Workflow runs once (its nodes keep "
                f"their task ids); build a new Workflow to run the same work again"
            )
        graph = self.freeze()
        if not len(graph) and graph.output is None:  # (an empty group's result is [])
            raise BuildError(
                "the workflow has no nodes: add a canvas or a signature before apply_async()"
            )
        app = self.app
        processor = processor_of(app)
        if processor is None:
            raise ConfigurationError(
                f"no dyrygent processor is registered on app {app.main!r}: call "
                f"dyrygent.register_workflow_processor(app) in a module the workers import"
            )
        header = Header(dict(options or {}), self.options, self.fail_fast)
        processor.start(self.id, graph, header, self.max_age, self.max_bytes)
        self._started = True
        return WorkflowResult(self.id, app=app, nodes=self._nodes)
