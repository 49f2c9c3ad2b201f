"""Building a graph: nodes collected by id, then validated and frozen into a Graph.

Pure Python, like the rest of the core; the canvas converter and ``Workflow`` feed it.
"""

from __future__ import annotations

from collections.abc import Iterable

from dyrygent.core.graph import Expr, Graph, Node, NodeKind, check_acyclic, expr_refs
from dyrygent.core.rules import TriggerRule
from dyrygent.errors import DuplicateNodeError, UnknownDependencyError

__all__ = ["GraphBuilder"]


def _map_expr(expr: Expr, mapping: dict[str, int]) -> Expr:
    if isinstance(expr, list):
        return [_map_expr(item, mapping) for item in expr]
    if expr is None:
        return None
    return mapping[expr]  # type: ignore[index]


class GraphBuilder:
    """Collects nodes by id, then :meth:`freeze` validates them into a :class:`Graph`.

    Nodes may be added in any order; dependencies are checked at freeze time.
    """

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._tasks: list[str] = []
        self._specs: list[bytes] = []
        self._parents: list[tuple[str, ...]] = []
        self._inputs: list[Expr] = []
        self._labels: dict[int, str] = {}
        self._rules: dict[int, TriggerRule] = {}
        self._kinds: dict[int, NodeKind] = {}
        self._seen: set[str] = set()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._seen

    def entries(self, start: int = 0) -> list[tuple[str, str]]:
        """(id, task) of the nodes added since the ``start``-th, in order."""
        return list(zip(self._ids[start:], self._tasks[start:]))

    def parents_of(self, position: int) -> tuple[str, ...]:
        """The dependency ids of the ``position``-th node added."""
        return self._parents[position]

    def label_of(self, position: int) -> str | None:
        """The label of the ``position``-th node added (None: it has none)."""
        return self._labels.get(position)

    def set_label(self, position: int, label: str | None) -> None:
        """Label the ``position``-th node added (None removes its label)."""
        if label is None:
            self._labels.pop(position, None)
        else:
            self._labels[position] = label

    def spec_of(self, position: int) -> bytes:
        """The spec of the ``position``-th node added."""
        return self._specs[position]

    def set_spec(self, position: int, spec: bytes) -> None:
        """Replace the spec of the ``position``-th node added (e.g. to add a deadline)."""
        self._specs[position] = spec

    def set_rule(self, node_id: str, rule: TriggerRule) -> None:
        """Give the node ``node_id`` a start rule (the default is all_success)."""
        position = self._ids.index(node_id)
        if rule is TriggerRule.ALL_SUCCESS:
            self._rules.pop(position, None)
        else:
            self._rules[position] = rule

    def set_kind(self, node_id: str, kind: NodeKind) -> None:
        """Make the node ``node_id`` a node of ``kind``."""
        position = self._ids.index(node_id)
        if kind is NodeKind.TASK:
            self._kinds.pop(position, None)
        else:
            self._kinds[position] = kind

    def add(
        self,
        node_id: str,
        task: str,
        spec: bytes,
        parents: Iterable[str] = (),
        input: Expr = None,
        *,
        label: str | None = None,
        rule: TriggerRule = TriggerRule.ALL_SUCCESS,
        kind: NodeKind = NodeKind.TASK,
    ) -> None:
        """Add a node; raises DuplicateNodeError if ``node_id`` was added before."""
        if node_id in self._seen:
            raise DuplicateNodeError(
                f"node {node_id!r} ({task}) was added twice: every node needs its own task id; "
                f"use sig.clone() (which gets a new id when frozen) or set a distinct task_id",
                node=node_id,
            )
        parent_ids = tuple(dict.fromkeys(parents))  # dedupe, keep order
        self._seen.add(node_id)
        self._ids.append(node_id)
        self._tasks.append(task)
        self._specs.append(spec)
        self._parents.append(parent_ids)
        self._inputs.append(input)
        position = len(self._ids) - 1
        if label is not None:
            self._labels[position] = label
        if rule is not TriggerRule.ALL_SUCCESS:
            self._rules[position] = rule
        if kind is not NodeKind.TASK:
            self._kinds[position] = kind

    def freeze(self, output: Expr = None) -> Graph:
        """Validate and return the graph.

        Raises UnknownDependencyError for a dependency or input reference outside the
        workflow, and CycleError naming the nodes of a cycle.
        """
        index = {node_id: i for i, node_id in enumerate(self._ids)}
        for node_id, task, parents, inp in zip(self._ids, self._tasks, self._parents, self._inputs):
            for p in parents:
                if p not in index:
                    raise UnknownDependencyError(
                        f"node {node_id!r} ({task}) depends on {p!r}, which is not in the "
                        f"workflow: "
                        f"add that node first, or drop the dependency",
                        node=node_id,
                    )
            for ref in expr_refs(inp):
                if ref not in index or ref not in parents:
                    raise UnknownDependencyError(
                        f"node {node_id!r} ({task}) takes the result of {ref!r}, which is not "
                        f"one of its dependencies: add it to its dependencies",
                        node=node_id,
                    )
        for ref in expr_refs(output):
            if ref not in index:
                raise UnknownDependencyError(
                    f"the workflow result refers to {ref!r}, which is not in the workflow",
                    node=str(ref),
                )
        check_acyclic(self._ids, self._parents)
        labels, rules, kinds = self._labels, self._rules, self._kinds
        nodes = [
            Node(
                node_id,
                task,
                spec,
                tuple(index[p] for p in parents),
                _map_expr(inp, index),
                labels.get(i),
                rules.get(i, TriggerRule.ALL_SUCCESS),
                kinds.get(i, NodeKind.TASK),
            )
            for i, (node_id, task, spec, parents, inp) in enumerate(
                zip(self._ids, self._tasks, self._specs, self._parents, self._inputs)
            )
        ]
        return Graph(nodes, _map_expr(output, index))
