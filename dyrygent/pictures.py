"""Pictures of a workflow: Graphviz DOT and Mermaid text, and rendering DOT to SVG or PNG.

Pure: works on a :class:`~dyrygent.core.graph.Graph` and, optionally, its state bytes (one
:class:`~dyrygent.core.states.NodeState` per node, as the store keeps them); no Celery.

* Each node is a box labelled by its label (or task name), with its state on a second line;
  its DOT name and tooltip are its task id (Mermaid names it ``n<index>`` and keeps the
  task id in a ``%%`` comment, as Mermaid ids cannot hold every character a task id may).
* Boxes are filled by state with :data:`PALETTE`: WAITING grey, READY pale yellow,
  LAUNCHED light blue, RUNNING blue, SUCCEEDED green, FAILED red, UPSTREAM_FAILED orange,
  SKIPPED light grey, CANCELLED purple; a graph drawn before it starts is white.
* Big graphs stay readable: a group of more than ``collapse`` siblings sharing the same
  parents and children (a group's or a chord header's members) is drawn as one box with
  its count and its members' counts per state (``tasks.add ×1000: 990 SUCCEEDED,
  10 RUNNING``), filled with the colour of the state most of them are in.

:func:`render` runs Graphviz's ``dot`` (a subprocess: the ``graphviz`` Python package is
only a wrapper around the same call, not worth a dependency).
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from dyrygent.core.graph import Graph
from dyrygent.core.states import NodeState
from dyrygent.errors import RenderError

__all__ = ["DEFAULT_COLLAPSE", "PALETTE", "RenderError", "render", "to_dot", "to_mermaid"]

#: Groups of more siblings than this are drawn as one box.
DEFAULT_COLLAPSE = 50
#: The fill colour of a node in each state (fixed, so pictures compare across runs).
PALETTE: dict[NodeState, str] = {
    NodeState.WAITING: "#e0e0e0",
    NodeState.READY: "#fff3b0",
    NodeState.LAUNCHED: "#c6dafc",
    NodeState.RUNNING: "#8ab4f8",
    NodeState.SUCCEEDED: "#a8dab5",
    NodeState.FAILED: "#f28b82",
    NodeState.UPSTREAM_FAILED: "#fbc08a",
    NodeState.SKIPPED: "#f5f5f5",
    NodeState.CANCELLED: "#d7aefb",
}
_UNSTARTED = "#ffffff"
_FORMATS = ("svg", "png")


@dataclass(frozen=True)
class _Box:
    """One box of the picture: a node, or a collapsed group of siblings."""

    key: str  # the DOT name: the task id, or "group:<first member's task id>"
    members: tuple[int, ...]
    label: str
    state: NodeState | None  # its (most common) state; None before the workflow starts
    tooltip: str

    @property
    def fill(self) -> str:
        return _UNSTARTED if self.state is None else PALETTE[self.state]

    @property
    def style(self) -> str:
        """Its Mermaid class: the state's name, or "unstarted"."""
        return "unstarted" if self.state is None else self.state.name


def _state_names(counts: Counter[NodeState]) -> str:
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{n} {s.name}" for s, n in ordered)


def _boxes(graph: Graph, states: bytes | None, collapse: int) -> tuple[list[_Box], list[int]]:
    """The boxes in graph order, and each node's box index."""
    siblings: dict[tuple[tuple[int, ...], tuple[int, ...]], list[int]] = {}
    children = graph.children
    for i, node in enumerate(graph.nodes):
        siblings.setdefault((node.parents, tuple(children[i])), []).append(i)
    box_of = [-1] * len(graph)
    boxes: list[_Box] = []
    for i, node in enumerate(graph.nodes):
        if box_of[i] >= 0:
            continue
        group = siblings[(node.parents, tuple(children[i]))]
        members = group if len(group) > collapse else [i]
        for m in members:
            box_of[m] = len(boxes)
        boxes.append(_box(graph, states, members))
    return boxes, box_of


def _box(graph: Graph, states: bytes | None, members: Sequence[int]) -> _Box:
    first = graph.nodes[members[0]]
    if len(members) == 1:
        if states is None:
            return _Box(first.id, (members[0],), first.name, None, first.id)
        state = NodeState(states[members[0]])
        return _Box(first.id, (members[0],), f"{first.name}\n{state.name}", state, first.id)
    names = Counter(graph.nodes[m].name for m in members)
    name = first.name if len(names) == 1 else f"{first.name} and others"
    label = f"{name} ×{len(members)}"
    tooltip = f"{len(members)} nodes: {first.id} … {graph.nodes[members[-1]].id}"
    if states is None:
        return _Box(f"group:{first.id}", tuple(members), label, None, tooltip)
    counts = Counter(NodeState(states[m]) for m in members)
    top = min(counts, key=lambda s: (-counts[s], s))
    return _Box(
        f"group:{first.id}",
        tuple(members),
        f"{label}: {_state_names(counts)}",
        top,
        tooltip,
    )


def _edges(graph: Graph, box_of: list[int]) -> list[tuple[int, int]]:
    seen: dict[tuple[int, int], None] = {}
    for i, node in enumerate(graph.nodes):
        for p in node.parents:
            seen.setdefault((box_of[p], box_of[i]), None)
    return list(seen)


def _check(graph: Graph, states: bytes | None, collapse: int) -> None:
    if states is not None and len(states) != len(graph):
        raise ValueError(
            f"states has {len(states)} entries for a graph of {len(graph)} nodes: pass the "
            f"workflow's own state bytes (one per node), or None"
        )
    if collapse < 1:
        raise ValueError(f"collapse={collapse}: give a group size of at least 1")


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def to_dot(graph: Graph, states: bytes | None = None, *, collapse: int = DEFAULT_COLLAPSE) -> str:
    """The graph in Graphviz's DOT language, coloured by ``states`` when given.

    Raises ValueError if ``states`` does not hold one entry per node, or ``collapse`` < 1.
    """
    _check(graph, states, collapse)
    boxes, box_of = _boxes(graph, states, collapse)
    lines = [
        "digraph workflow {",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica"];',
    ]
    for box in boxes:
        lines.append(
            f'  "{_dot_text(box.key)}" [label="{_dot_text(box.label)}", '
            f'tooltip="{_dot_text(box.tooltip)}", fillcolor="{box.fill}"];'
        )
    for a, b in _edges(graph, box_of):
        lines.append(f'  "{_dot_text(boxes[a].key)}" -> "{_dot_text(boxes[b].key)}";')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("\n", "<br/>")


def to_mermaid(
    graph: Graph, states: bytes | None = None, *, collapse: int = DEFAULT_COLLAPSE
) -> str:
    """The graph as a Mermaid flowchart, coloured by ``states`` when given.

    Raises ValueError if ``states`` does not hold one entry per node, or ``collapse`` < 1.
    """
    _check(graph, states, collapse)
    boxes, box_of = _boxes(graph, states, collapse)
    lines = ["flowchart LR"]
    for style, fill in dict.fromkeys((b.style, b.fill) for b in boxes):
        lines.append(f"  classDef {style} fill:{fill},stroke:#555")
    for k, box in enumerate(boxes):
        lines.append(f"  %% n{k}: {box.tooltip}")
        lines.append(f'  n{k}["{_mermaid_text(box.label)}"]:::{box.style}')
    for a, b in _edges(graph, box_of):
        lines.append(f"  n{a} --> n{b}")
    return "\n".join(lines) + "\n"


def render(graph_text: str, format: str = "svg", *, timeout: float = 60) -> bytes:
    """``graph_text`` (DOT) drawn by Graphviz's ``dot`` as ``format`` ("svg" or "png").

    Raises ValueError for another format, RenderError when
    ``dot`` is not installed, fails or runs longer than ``timeout`` seconds.
    """
    if format not in _FORMATS:
        raise ValueError(f"format={format!r}: render draws one of {', '.join(_FORMATS)}")
    dot = shutil.which("dot")
    if dot is None:
        raise RenderError(
            f"drawing {format} needs Graphviz's `dot`, which is not on PATH: install it "
            f"(`apt-get install graphviz`, `brew install graphviz`, ...), or ask for text "
            f"with --format dot or --format mermaid (to_dot()/to_mermaid())"
        )
    try:
        done = subprocess.run(
            [dot, f"-T{format}"], input=graph_text.encode(), capture_output=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise RenderError(
            f"Graphviz's dot did not draw the {format} within {timeout}s: draw fewer boxes "
            f"(a smaller collapse=), or take the DOT text and render it yourself"
        ) from None
    if done.returncode != 0:
        raise RenderError(
            f"Graphviz's dot failed (exit {done.returncode}) drawing {format}: "
            f"{done.stderr.decode(errors='replace').strip()}"
        )
    return done.stdout
