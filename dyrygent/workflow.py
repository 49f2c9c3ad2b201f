"""Workflow: build a graph from canvases and signatures, then publish it to the processor."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from celery import current_app
from celery import states as celery_states
from celery.canvas import Signature
from celery.utils import uuid

from dyrygent import pictures
from dyrygent.callbacks import Connect, class_hooks
from dyrygent.core.builder import GraphBuilder
from dyrygent.core.graph import Expr, Graph, NodeKind
from dyrygent.core.rules import TriggerRule
from dyrygent.core.simulate import simulate
from dyrygent.core.states import NodeState
from dyrygent.engine.canvas import CanvasConverter
from dyrygent.engine.eager import EagerWorkflowResult, check_tasks, run_eager
from dyrygent.engine.registry import processor_of
from dyrygent.engine.spec import Header, encode_spec, with_extras
from dyrygent.errors import BuildError, ConfigurationError, InvalidNodeError, LimitExceededError
from dyrygent.result import (
    Dependency,
    WorkflowGroupResult,
    WorkflowNode,
    WorkflowResult,
    workflow_result,
)

__all__ = [
    "EagerWorkflowResult",
    "Workflow",
    "WorkflowGroupResult",
    "WorkflowNode",
    "WorkflowResult",
]

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
    workflow still running after it in ERROR. ``fail_fast``: the first failed node ends the
    workflow at once (nothing more is launched; by default independent branches go on, as
    they do in a native canvas). ``max_expand`` caps the items of one expansion
    (:class:`dyrygent.expand`); an expansion over more fails its node, as one that would grow
    the workflow past ``max_nodes`` does. ``custom_payload``: a JSON dict kept with the
    workflow (``info().custom_payload``); ``link``: a signature called once with the
    workflow's result when it succeeds; ``link_error``: one called once with ``(failed node
    id, {"type", "message"})`` when it fails (both under task ids derived from the workflow
    id: ``<id>.link`` and ``<id>.link_error``). ``pass_results=False``: no node receives its
    parents' results (celery-dyrygent's semantics; README, "Migrating from celery-dyrygent");
    the workflow's own ``get()`` still returns the canvas's value.
    """

    #: celery-dyrygent's hooks: ``@MyWorkflow.connect("on_finish")`` on a subclass, or
    #: ``@wf.connect("on_finish")`` on one workflow (see :mod:`dyrygent.callbacks`).
    connect = Connect("Workflow")

    def __init__(
        self,
        options: dict[str, Any] | None = None,
        *,
        app: Any = None,
        max_nodes: int = DEFAULT_MAX_NODES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_age: int = DEFAULT_MAX_AGE,
        fail_fast: bool = False,
        max_expand: int = 10_000,
        custom_payload: dict[str, Any] | None = None,
        link: Signature | None = None,
        link_error: Signature | None = None,
        pass_results: bool = True,
    ) -> None:
        self.custom_payload = _json_dict("Workflow(custom_payload=...)", custom_payload)
        self.link = None if link is None else dict(link)
        self.link_error = None if link_error is None else dict(link_error)
        self._node_payloads: dict[str, Any] = {}
        self._skips: dict[str, Any] = {}
        self.options = dict(options or {})
        self.fail_fast = fail_fast
        self.max_expand = max_expand
        self.pass_results = pass_results
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
        kwargs: dict[str, Any] | None = None,
        timeout: float | None = None,
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
        kwargs: dict[str, Any] | None = None,
        *,
        label: str | None = None,
        trigger_rule: TriggerRule | str | None = None,
        timeout: float | None = None,
    ) -> list[WorkflowNode]:
        """Add a signature, chain, group, chord or chunks (nested to any depth).

        Its first tasks wait for ``dependencies`` and receive their results (one dependency:
        its result; several: the list, in the order given). ``args`` are partial args for the
        whole canvas, as in ``canvas.apply_async(args=...)``: prepended to its first tasks';
        ``kwargs`` likewise partial kwargs, merged into theirs (``kwargs`` win).
        Returns the nodes the canvas ends in; the workflow's result becomes this canvas's.
        ``label`` prefixes its nodes' labels (``"etl/tasks.add"``); ``trigger_rule`` is the
        start rule of its first nodes (default ``all_success``); ``timeout`` gives each of its
        nodes a deadline (see :meth:`add_signature`).
        Raises a BuildError subclass naming the node at fault.
        """
        return self._add(
            canvas,
            dependencies,
            args,
            label=label,
            trigger_rule=trigger_rule,
            kwargs=kwargs,
            timeout=timeout,
        )

    def add_signature(
        self,
        signature: Signature,
        dependencies: Iterable[Dependency] | Dependency | None = None,
        *,
        label: str | None = None,
        trigger_rule: TriggerRule | str | None = None,
        branch: bool = False,
        custom_payload: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> WorkflowNode:
        """Add one task call that runs after ``dependencies``; returns its node.

        ``label`` names it for people (default: its task name); ``trigger_rule`` says when
        it starts given its dependencies' outcomes (default ``all_success``); an unknown
        rule raises InvalidNodeError naming the node and the valid rules. ``branch``: the
        task returns the label (or list of labels) of the direct children to follow; the
        others are SKIPPED (see README, "Dynamic workflows"). ``custom_payload`` (a JSON
        dict) is kept with the node (``NodeInfo.custom_payload``). ``timeout``: a
        node still running that many seconds after it started (by the store's clock) is
        revoked (terminated) and fails with NodeTimeoutError; checked by the processor when
        the node runs on a worker that registered it (Celery's ``time_limit`` is the
        worker-side tool). Raises InvalidNodeError for a timeout that is not above 0.
        """
        payload = _json_dict(f"add_signature({signature!r}, custom_payload=...)", custom_payload)
        nodes = self._add(
            signature,
            dependencies,
            label=label,
            prefix=False,
            trigger_rule=trigger_rule,
            timeout=timeout,
        )
        if branch:
            self._builder.set_kind(nodes[0].id, NodeKind.BRANCH)
        if payload is not None:
            self._node_payloads[nodes[0].id] = payload
        return nodes[0]

    def skip(self, node: Dependency, result: Any = None) -> None:
        """Before start: do not run ``node``; it counts as SUCCEEDED with ``result`` (stored
        under its id in the result backend at ``apply_async``, so its children get it), as
        celery-dyrygent's ``skip_tasks``. Raises BuildError once started or for an unknown
        node."""
        node_id = node.id if isinstance(node, WorkflowNode) else str(node)
        if self._started:
            raise BuildError(f"skip({node_id!r}): workflow {self.id} was already started")
        if node_id not in self._builder:
            raise BuildError(f"skip({node_id!r}): workflow {self.id} has no such node")
        self._skips[node_id] = result

    def simulate(self) -> list[list[str]]:
        """A dry run: the node ids each tick would launch, in order, if every node
        succeeded (skipped nodes do not run). Pure: nothing is stored or published."""
        graph = self.freeze()
        states = bytearray(len(graph))
        for node_id in self._skips:
            states[graph.index[node_id]] = NodeState.SUCCEEDED
        return [[graph.nodes[i].id for i in wave] for wave in simulate(graph, bytes(states))]

    def _header(self, options: dict[str, Any] | None) -> Header:
        hooks = class_hooks(type(self))
        for name, paths in self.__dict__.get("_dyrygent_hooks", {}).items():
            hooks.setdefault(name, []).extend(p for p in paths if p not in hooks.get(name, ()))
        return Header(
            dict(options or {}),
            self.options,
            self.fail_fast,
            max_expand=self.max_expand,
            max_nodes=self.max_nodes,
            custom_payload=self.custom_payload,
            node_payloads=dict(self._node_payloads),
            hooks=hooks,
            link=self.link,
            link_error=self.link_error,
        )

    def freeze(self) -> Graph:
        """Validate the graph (cycles, unknown dependencies) and return it."""
        graph = self._builder.freeze(self._output)
        if self.pass_results:
            return graph
        return Graph([replace(n, input=None) for n in graph.nodes], graph.output)

    def to_dot(self, *, collapse: int = pictures.DEFAULT_COLLAPSE) -> str:
        """The graph in Graphviz's DOT, before it starts (:mod:`dyrygent.pictures`);
        raises BuildError like :meth:`freeze`."""
        return pictures.to_dot(self.freeze(), collapse=collapse)

    def to_mermaid(self, *, collapse: int = pictures.DEFAULT_COLLAPSE) -> str:
        """The graph as a Mermaid flowchart, before it starts (:mod:`dyrygent.pictures`);
        raises BuildError like :meth:`freeze`."""
        return pictures.to_mermaid(self.freeze(), collapse=collapse)

    def _frozen_for_start(self, call: str) -> Graph:
        """The validated graph of a workflow about to run; raises BuildError for an empty
        graph or a workflow already started."""
        if self._started:
            raise BuildError(
                f"workflow {self.id} was already started: a Workflow runs once (its nodes keep "
                f"their task ids); build a new Workflow to run the same work again"
            )
        graph = self.freeze()
        if not len(graph) and graph.output is None:  # (an empty group's result is [])
            raise BuildError(
                f"the workflow has no nodes: add a canvas or a signature before {call}()"
            )
        return graph

    def apply(self, options: dict[str, Any] | None = None) -> EagerWorkflowResult:
        """Run the whole workflow now, in this process, as ``canvas.apply()`` does: every node
        runs with ``Task.apply`` in dependency order and receives exactly what the processor
        would give it. No broker, result backend or processor is needed; nothing is stored.

        Returns an EagerResult whose ``get()`` gives the workflow's value or raises the failed
        node's exception (with ``task_eager_propagates`` set, ``apply()`` raises it, as a
        native eager canvas does). Raises BuildError (empty, already started) and
        ConfigurationError (a node's task is not registered on the app) before running
        anything.
        """
        graph = self._frozen_for_start("apply")
        check_tasks(self.app, graph)  # (before it counts as started: import, then retry)
        header = Header(dict(options or {}), self.options, self.fail_fast)
        self._started = True
        return run_eager(self.app, self.id, graph, header, self._nodes)

    def apply_async(
        self, options: dict[str, Any] | None = None
    ) -> WorkflowResult | WorkflowGroupResult | EagerWorkflowResult:
        """Validate, store and start the workflow; ``options`` apply to every node. Returns a
        handle shaped like the canvas's native result (see :mod:`dyrygent.result`).

        With ``task_always_eager`` set on the app, runs it now instead, like :meth:`apply`
        (as Celery does for canvases). Raises BuildError for an empty graph or a workflow
        already started, PayloadError for a node the workers would refuse (an unknown task,
        a pickle serializer), before anything is stored or published.
        """
        app = self.app
        if app.conf.task_always_eager:
            return self.apply(options)
        graph = self._frozen_for_start("apply_async")
        processor = processor_of(app)
        if processor is None:
            raise ConfigurationError(
                f"no dyrygent processor is registered on app {app.main!r}: call "
                f"dyrygent.register_workflow_processor(app) in a module the workers import"
            )
        header = self._header(options)
        skipped = [graph.index[node_id] for node_id in self._skips]
        for node_id, value in self._skips.items():
            app.backend.store_result(node_id, value, celery_states.SUCCESS)
        processor.start(self.id, graph, header, self.max_age, self.max_bytes, skipped)
        self._started = True
        return workflow_result(self.id, app, self._nodes, graph)


def _json_dict(call: str, value: dict[str, Any] | None) -> dict[str, Any] | None:
    """``value`` if it is None or a dict JSON can carry; raises BuildError otherwise."""
    if value is None:
        return None
    try:
        if not isinstance(value, dict):
            raise TypeError(f"a {type(value).__name__}, not a dict")
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise BuildError(f"{call}: the payload must be a JSON dict ({exc})") from exc
    return value
