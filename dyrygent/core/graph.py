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
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Union, cast

from dyrygent.core.rules import TriggerRule
from dyrygent.core.states import TRANSITIONS, NodeState
from dyrygent.errors import CycleError

__all__ = [
    "Expr",
    "Graph",
    "Node",
    "NodeKind",
    "NodeState",
    "TRANSITIONS",
    "expr_refs",
    "index_refs",
    "evaluate",
]

#: An input expression: None, a node index (or id while building), or a list of expressions.
Expr = Union[None, int, str, "list[Expr]"]


class NodeKind(enum.IntEnum):
    """What a node is; room for kinds the processor treats specially."""

    TASK = 0  # a Celery task call
    BRANCH = 1  # a task call whose result names the direct children to follow
    EXPAND = 2  # no task: a canvas run once per item of its input (see core/segments.py)


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

    __slots__ = (
        "nodes",
        "output",
        "index",
        "kinds",
        "expansions",
        "_children",
        "_leaves",
        "_owners",
    )

    def __init__(
        self,
        nodes: Sequence[Node],
        output: Expr,
        expansions: dict[int, tuple[int, int, Expr]] | None = None,
    ) -> None:
        self.nodes: tuple[Node, ...] = tuple(nodes)
        self.output: Expr = output
        self.index: dict[str, int] = {n.id: i for i, n in enumerate(self.nodes)}
        #: the node kinds present (a tick skips what a kind needs when it is absent)
        self.kinds: frozenset[NodeKind] = frozenset(n.kind for n in self.nodes)
        #: EXPAND node -> (first node, end, gather expression) of the nodes it appended
        self.expansions: dict[int, tuple[int, int, Expr]] = dict(expansions or {})
        self._children: list[list[int]] | None = None
        self._leaves: list[int] | None = None
        self._owners: dict[int, int] | None = None

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

    def expansion_of(self, i: int) -> int | None:
        """The EXPAND node whose expansion appended node ``i`` (the innermost), or None."""
        if not self.expansions:
            return None
        if self._owners is None:
            owners: dict[int, int] = {}
            for k, (start, end, _) in sorted(self.expansions.items(), key=lambda e: e[1][0]):
                owners.update(dict.fromkeys(range(start, end), k))
            self._owners = owners
        return self._owners.get(i)

    def roots(self) -> list[int]:
        return [i for i, n in enumerate(self.nodes) if not n.parents]


def expr_refs(expr: Expr) -> Iterator[int | str]:
    """Every node reference (index or id) inside ``expr``, depth first, in order."""
    if expr is None:
        return
    if isinstance(expr, list):
        for item in expr:
            yield from expr_refs(item)
    else:
        yield expr


def index_refs(expr: Expr) -> Iterator[int]:
    """The node indices inside ``expr`` of a frozen graph (where every reference is one)."""
    return cast("Iterator[int]", expr_refs(expr))


def evaluate(expr: Expr, results: dict[int, object] | Sequence[object]) -> object:
    """The value of ``expr`` given each referenced node's result."""
    if isinstance(expr, list):
        return [evaluate(item, results) for item in expr]
    if expr is None:
        return None
    return results[expr]  # type: ignore[index]


def check_acyclic(ids: Sequence[Hashable], parents: Sequence[Sequence[Hashable]]) -> None:
    """Raise CycleError if the dependencies (by id or index) form a cycle."""
    sorter: graphlib.TopologicalSorter[Hashable] = graphlib.TopologicalSorter()
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
