"""The workflow graph: nodes, dependencies, argument flow and node states.

Pure Python: this module knows nothing of Celery. A node is a task call identified by its
task id; what it receives from its parents is an *input expression*:

* ``None``: nothing is prepended (an immutable signature, or no parent);
* an ``int``: the result of the node at that index;
* a ``list`` of expressions: a list built from those results (a group's result).

The same expression language describes the workflow's own result.
"""

from __future__ import annotations

import enum
import graphlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Union

from dyrygent.core.rules import TriggerRule
from dyrygent.core.states import TRANSITIONS, NodeState
from dyrygent.errors import CycleError, DuplicateNodeError, UnknownDependencyError

__all__ = [
    "Expr",
    "Graph",
    "GraphBuilder",
    "Node",
    "NodeKind",
    "NodeState",
    "TRANSITIONS",
    "expr_refs",
    "evaluate",
]

#: An input expression: None, a node index (or id while building), or a list of expressions.
Expr = Union[None, int, str, list]


class NodeKind(enum.IntEnum):
    """What a node is; room for kinds the processor treats specially."""

    TASK = 0  # a Celery task call


@dataclass(frozen=True)
class Node:
    """One task call of a frozen graph.

    ``spec`` is opaque to the core: the adapter's encoding of args, kwargs and options.
    ``parents`` and the ints inside ``input`` are indices into the graph's node list.
    ``label`` names the node for people (None: its task name); ``rule`` says when it starts.
    """

    id: str
    task: str
    spec: bytes
    parents: tuple[int, ...]
    input: Expr
    label: str | None = None
    rule: TriggerRule = TriggerRule.ALL_SUCCESS
    kind: NodeKind = NodeKind.TASK

    @property
    def name(self) -> str:
        """The label, or the task name when it has none."""
        return self.label or self.task


class Graph:
    """An immutable, validated DAG of nodes, indexed by position.

    Build one with :class:`GraphBuilder`. ``children`` is derived, never stored.
    """

    __slots__ = ("nodes", "output", "index", "_children", "_leaves")

    def __init__(self, nodes: Sequence[Node], output: Expr) -> None:
        self.nodes: tuple[Node, ...] = tuple(nodes)
        self.output: Expr = output
        self.index: dict[str, int] = {n.id: i for i, n in enumerate(self.nodes)}
        self._children: list[list[int]] | None = None
        self._leaves: list[int] | None = None

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def children(self) -> list[list[int]]:
        """children[i]: the indices of the nodes that depend on node i."""
        if self._children is None:
            children: list[list[int]] = [[] for _ in self.nodes]
            for i, node in enumerate(self.nodes):
                for p in node.parents:
                    children[p].append(i)
            self._children = children
        return self._children

    @property
    def leaves(self) -> list[int]:
        """The nodes no other node depends on, ascending."""
        if self._leaves is None:
            self._leaves = [i for i, c in enumerate(self.children) if not c]
        return self._leaves

    def roots(self) -> list[int]:
        return [i for i, n in enumerate(self.nodes) if not n.parents]


def expr_refs(expr: Expr) -> Iterator:
    """Every node reference (index or id) inside ``expr``, depth first, in order."""
    if expr is None:
        return
    if isinstance(expr, list):
        for item in expr:
            yield from expr_refs(item)
    else:
        yield expr


def evaluate(expr: Expr, results: dict[int, object] | Sequence[object]) -> object:
    """The value of ``expr`` given each referenced node's result."""
    if isinstance(expr, list):
        return [evaluate(item, results) for item in expr]
    if expr is None:
        return None
    return results[expr]  # type: ignore[index]


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
                    node=ref,
                )
        check_acyclic(self._ids, self._parents)
        labels, rules = self._labels, self._rules
        nodes = [
            Node(
                node_id,
                task,
                spec,
                tuple(index[p] for p in parents),
                _map_expr(inp, index),
                labels.get(i),
                rules.get(i, TriggerRule.ALL_SUCCESS),
            )
            for i, (node_id, task, spec, parents, inp) in enumerate(
                zip(self._ids, self._tasks, self._specs, self._parents, self._inputs)
            )
        ]
        return Graph(nodes, _map_expr(output, index))


def check_acyclic(ids: Sequence, parents: Sequence[Sequence]) -> None:
    """Raise CycleError if the dependencies (by id or index) form a cycle."""
    sorter: graphlib.TopologicalSorter = graphlib.TopologicalSorter()
    for node_id, deps in zip(ids, parents):
        sorter.add(node_id, *deps)
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        cycle = [str(c) for c in exc.args[1]]
        raise CycleError(
            f"the dependencies form a cycle: {' -> '.join(cycle)}; "
            f"remove one of these dependencies",
            cycle=cycle,
        ) from None
