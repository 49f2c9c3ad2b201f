"""celery-dyrygent's ``celery_dyrygent.workflows``, for migrating users: change the import.

:class:`Workflow` is dyrygent's :class:`dyrygent.Workflow` with celery-dyrygent 0.8.0's
members added, with their meaning and arguments, and celery-dyrygent's result semantics by
default (``pass_results=False``: no node receives its parents' results). Where the two APIs
differ, both are kept, and dyrygent's own names keep dyrygent's meaning, except ``nodes``:
here a dict of node id -> :class:`WorkflowNode` (with ``signature`` and ``dependencies``),
as in celery-dyrygent. README, "Migrating from celery-dyrygent", has the whole table.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from celery import states as celery_states
from celery.canvas import Signature, _chain, _chord, group

from dyrygent.compat import hooks as _hooks
from dyrygent.compat import serialize
from dyrygent.compat.nodes import WorkflowNode
from dyrygent.compat.starting import start_with
from dyrygent.core.graph import Graph
from dyrygent.core.rules import TriggerRule
from dyrygent.core.states import NodeState
from dyrygent.engine.registry import processor_of
from dyrygent.engine.spec import Header
from dyrygent.errors import BuildError, ConfigurationError, DyrygentError
from dyrygent.workflow import Dependency, WorkflowResult
from dyrygent.workflow import Workflow as _Workflow
from dyrygent.workflow import WorkflowNode as _WorkflowNode

__all__ = ["Workflow", "WorkflowException", "WorkflowNode", "WorkflowState"]

#: celery-dyrygent's one exception is dyrygent's error root: ``except WorkflowException``
#: catches every error dyrygent raises.
WorkflowException = DyrygentError


class WorkflowState:
    """celery-dyrygent's workflow states (what ``on_state_change`` handlers receive)."""

    INITIAL = "INITIAL"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    ERROR = "ERROR"


class Workflow(_Workflow):
    """dyrygent's Workflow with celery-dyrygent's members (see the module docstring).

    ``custom_payload``: a JSON dict kept with the workflow (hook handlers see it);
    ``pass_results`` (default False, celery-dyrygent's semantics): set True to pass parents'
    results as native Celery does (``dyrygent.Workflow``'s default). Other arguments are
    dyrygent's.
    """

    def __init__(
        self,
        options: dict[str, Any] | None = None,
        *,
        custom_payload: dict[str, Any] | None = None,
        pass_results: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(options, pass_results=pass_results, **kwargs)
        self.custom_payload: dict[str, Any] = dict(custom_payload or {})
        self.retry_policy: list[Any] | None = None
        self.state = WorkflowState.INITIAL
        self.running: dict[str, Any] = {}  # (simulate_tick's)
        self.finished: dict[str, bool] = {}  # skip_tasks and simulate_tick
        self.tasks_options: dict[str, Any] = {}
        self._compat_nodes: dict[str, WorkflowNode] = {}
        self._frozen: tuple[int, Graph] | None = None

    # -- celery-dyrygent's names ------------------------------------------------------------

    connect = staticmethod(_hooks.connect)
    #: Hook name -> handlers, for every workflow in this process (celery-dyrygent's dict).
    hooks = _hooks.HANDLERS

    def emit(self, hook_name: str, payload: Any = None) -> None:
        """Call the handlers of ``hook_name`` with this workflow and ``payload`` here, now
        (the processor emits the hooks itself as the workflow runs)."""
        view = _hooks.HookWorkflow(self.id, dict(self.custom_payload), self.state, self.app)
        _hooks.emit(hook_name, view, payload)

    @property
    def nodes(self) -> dict[str, WorkflowNode]:  # type: ignore[override]
        """Node id -> node, in the order added (celery-dyrygent's ``nodes``)."""
        return self._compat_nodes

    @property
    def workflow_options(self) -> dict[str, Any]:
        """celery-dyrygent's name for ``options`` (the processor's apply_async options)."""
        return self.options

    @property
    def max_processing_time(self) -> int:
        return self.max_age

    def set_max_processing_time(self, seconds: int) -> None:
        """celery-dyrygent's name for ``max_age``: the workflow ends in ERROR if it runs
        longer than ``seconds``."""
        self.max_age = int(seconds)

    def set_retry_policy(self, retry_type: str, *retry_args: float) -> None:
        """``set_retry_policy('random', low, high)``: this workflow's backup tick comes
        ``low`` seconds after a tick that found work, backing off to ``high`` while idle
        (dyrygent's processor ticks on every node's end besides). Raises BuildError for
        another type, or bounds that are not ``0 < low <= high``."""
        if retry_type != "random":
            raise BuildError(f'Invalid retry policy, got "{retry_type}": only "random" exists')
        if not (len(retry_args) == 2 and 0 < retry_args[0] <= retry_args[1]):
            raise BuildError(
                f"set_retry_policy('random', {', '.join(map(repr, retry_args))}): give two "
                f"bounds in seconds, 0 < low <= high"
            )
        self.retry_policy = [retry_type, *retry_args]

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
        """dyrygent's ``add_signature``, with celery-dyrygent's node ``custom_payload``."""
        node = super().add_signature(
            signature,
            dependencies,
            label=label,
            trigger_rule=trigger_rule,
            branch=branch,
            custom_payload=custom_payload,
            timeout=timeout,
        )
        assert isinstance(node, WorkflowNode)  # (_builder_nodes makes them)
        node.custom_payload = dict(custom_payload or {})
        return node

    def add_celery_signature(
        self, signature: Signature, dependencies: Iterable[Dependency] | None = None
    ) -> list[WorkflowNode]:
        """Add one task call; returns ``[node]``."""
        return [self.add_signature(signature, dependencies)]

    def _add_kind(self, kind: type, name: str, canvas: Any, deps: Any) -> list[WorkflowNode]:
        if not isinstance(canvas, kind):
            raise BuildError(f"add_celery_{name}() was given {type(canvas).__name__}: use "
                             f"add_celery_canvas(), which takes any canvas")  # fmt: skip
        return self.add_celery_canvas(canvas, deps)  # type: ignore[return-value]

    def add_celery_chain(self, chain: Any, dependencies: Any = None) -> list[WorkflowNode]:
        """Add a chain; returns the nodes it ends in."""
        return self._add_kind(_chain, "chain", chain, dependencies)

    def add_celery_group(self, group_: Any, dependencies: Any = None) -> list[WorkflowNode]:
        """Add a group; returns its members' end nodes (``dependencies`` if it is empty)."""
        return self._add_kind(group, "group", group_, dependencies)

    def add_celery_chord(self, chord: Any, dependencies: Any = None) -> list[WorkflowNode]:
        """Add a chord; returns its body's end nodes."""
        return self._add_kind(_chord, "chord", chord, dependencies)

    def iterate_dependencies(self) -> Iterator[tuple[WorkflowNode, WorkflowNode | None]]:
        """(node, dependency) pairs sorted by node id then dependency id; (node, None) for a
        node without dependencies."""
        nodes = self._compat_nodes
        for node in sorted(nodes.values(), key=lambda n: n.id):
            for dep in sorted(node.dependencies):
                yield node, nodes[dep]
            if not node.dependencies:
                yield node, None

    def skip_tasks(self, task_ids: Sequence[str]) -> None:
        """Mark ``task_ids`` finished (succeeded, never run). Every parent of a skipped node
        must be skipped too; raises BuildError otherwise, or for an unknown id."""
        wanted = set(task_ids)
        for task_id in task_ids:
            if task_id not in self._compat_nodes:
                raise BuildError(f"skip_tasks(): workflow {self.id} has no node {task_id!r}")
            parents = set(self._compat_nodes[task_id].dependencies)
            if not parents <= wanted:
                raise BuildError(
                    f"Can't mark dependant task as finished when not all parents finished: "
                    f"node {task_id} depends on {sorted(parents - wanted)}; skip them too",
                    node=task_id,
                )
        for task_id in task_ids:
            self.finished[task_id] = True

    def simulate_tick(self) -> bool | None:
        """One simulated tick, as celery-dyrygent's: the nodes of the previous simulated tick
        count as finished, and those whose dependencies all finished are now ``running``.
        Returns True while something runs. (It changes ``finished``, as celery-dyrygent's
        does: simulate on a workflow you will not start.)"""
        for task_id in self.running:
            self.finished[task_id] = True
        self.running = {}
        ok = {i for i, succeeded in self.finished.items() if succeeded}
        for node in self._compat_nodes.values():
            if node.id not in self.finished and set(node.dependencies) <= ok:
                self.running[node.id] = True
        return True if self.running else None

    def to_dict(self) -> dict[str, Any]:
        """This built, not yet started workflow as JSON-safe data (see
        :mod:`dyrygent.compat.serialize`)."""
        return serialize.to_dict(self)

    @classmethod
    def from_dict(cls, workflow_dict: dict[str, Any], app: Any = None) -> Workflow:
        """The workflow ``to_dict`` described, with the same id and node ids."""
        return serialize.from_dict(cls, workflow_dict, app)

    # -- dyrygent's, adapted --------------------------------------------------------------

    def _builder_nodes(self, start: int) -> list[_WorkflowNode]:
        b = self._builder
        made: list[_WorkflowNode] = []
        for k, (node_id, task) in enumerate(b.entries(start)):
            node = WorkflowNode(node_id, task, b.label_of(start + k) or task, self, start + k)
            self._compat_nodes[node_id] = node
            made.append(node)
        return made

    def freeze_with_inputs(self) -> Graph:
        """The graph as built, with the inputs ``pass_results=True`` would give (cached
        until a node is added)."""
        size = len(self._builder)
        if self._frozen is None or self._frozen[0] != size:
            self._frozen = (size, self._builder.freeze(self._output))
        return self._frozen[1]

    def apply_async(self, options: dict[str, Any] | None = None) -> WorkflowResult:
        """Validate, store and start the workflow; ``options`` apply to every node. Nodes
        marked finished (``skip_tasks``) do not run: they count as succeeded with a None
        result. Raises as ``dyrygent.Workflow.apply_async``."""
        if self._started:
            raise BuildError(f"workflow {self.id} was already started: build a new Workflow")
        graph = self.freeze()
        if not len(graph) and graph.output is None:
            raise BuildError("the workflow has no nodes: add a canvas or a signature first")
        app = self.app
        processor = processor_of(app)
        if processor is None:
            raise ConfigurationError(
                f"no dyrygent processor is registered on app {app.main!r}: call "
                f"dyrygent.tasks.register_workflow_processor(app) in a module the workers import"
            )
        self.tasks_options = dict(options or {})
        header = Header(dict(self.tasks_options), self.options, self.fail_fast)
        given = {}
        for node_id, ok in self.finished.items():
            given[graph.index[node_id]] = NodeState.SUCCEEDED if ok else NodeState.FAILED
            if ok:
                app.backend.store_result(node_id, None, celery_states.SUCCESS)
        payloads = {n.id: n.custom_payload for n in self._compat_nodes.values() if n.custom_payload}
        extras = {
            "custom_payload": json.loads(json.dumps(self.custom_payload)),
            "node_payloads": payloads,
            "backup_interval": self.retry_policy[1:] if self.retry_policy else None,
        }

        def started() -> None:  # celery-dyrygent's first tick sets RUNNING, then launches
            self._started = True
            self.state = WorkflowState.RUNNING
            self.emit("on_state_change", WorkflowState.RUNNING)

        start_with(
            processor, self.id, graph, header, extras, self.max_age, self.max_bytes, given, started
        )
        return WorkflowResult(self.id, app=app, nodes=self._nodes)
