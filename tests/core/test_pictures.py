"""Pictures of a workflow: DOT and Mermaid text (exact), collapsed groups, an SVG by dot."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET

import pytest

from dyrygent.core.builder import GraphBuilder
from dyrygent.core.graph import Graph
from dyrygent.core.states import NodeState as S
from dyrygent.errors import RenderError
from dyrygent.pictures import PALETTE, render, to_dot, to_mermaid


def diamond() -> Graph:
    b = GraphBuilder()
    b.add("a", "t.extract", b"")
    b.add("b", "t.left", b"", ["a"], "a", label="left")
    b.add("c", "t.right", b"", ["a"], "a")
    b.add("d", "t.join", b"", ["b", "c"], ["b", "c"])
    return b.freeze("d")


def chord(size: int, task: str = "tasks.add") -> Graph:
    """start -> chord(size x task, tasks.tsum)."""
    b = GraphBuilder()
    b.add("start", "tasks.start", b"")
    header = [f"h{k}" for k in range(size)]
    for h in header:
        b.add(h, task, b"", ["start"], "start")
    b.add("body", "tasks.tsum", b"", header, list(header))
    return b.freeze("body")


DIAMOND_DOT = """\
digraph workflow {
  rankdir=LR;
  node [shape=box, style="rounded,filled", fontname="Helvetica"];
  "a" [label="t.extract\\nSUCCEEDED", tooltip="a", fillcolor="#a8dab5"];
  "b" [label="left\\nRUNNING", tooltip="b", fillcolor="#8ab4f8"];
  "c" [label="t.right\\nFAILED", tooltip="c", fillcolor="#f28b82"];
  "d" [label="t.join\\nWAITING", tooltip="d", fillcolor="#e0e0e0"];
  "a" -> "b";
  "a" -> "c";
  "b" -> "d";
  "c" -> "d";
}
"""

DIAMOND_MERMAID = """\
flowchart LR
  classDef SUCCEEDED fill:#a8dab5,stroke:#555
  classDef RUNNING fill:#8ab4f8,stroke:#555
  classDef FAILED fill:#f28b82,stroke:#555
  classDef WAITING fill:#e0e0e0,stroke:#555
  %% n0: a
  n0["t.extract<br/>SUCCEEDED"]:::SUCCEEDED
  %% n1: b
  n1["left<br/>RUNNING"]:::RUNNING
  %% n2: c
  n2["t.right<br/>FAILED"]:::FAILED
  %% n3: d
  n3["t.join<br/>WAITING"]:::WAITING
  n0 --> n1
  n0 --> n2
  n1 --> n3
  n2 --> n3
"""

DIAMOND_STATES = bytes([S.SUCCEEDED, S.RUNNING, S.FAILED, S.WAITING])


def test_a_running_diamond_in_dot_and_mermaid():
    # Given a diamond whose nodes are in four states
    # When it is drawn
    # Then each node is a box labelled by its label (or task) and state, filled by state,
    # named by its task id in DOT (and in a Mermaid comment), with one arrow per dependency
    assert to_dot(diamond(), DIAMOND_STATES) == DIAMOND_DOT
    assert to_mermaid(diamond(), DIAMOND_STATES) == DIAMOND_MERMAID


def test_a_diamond_before_it_starts_is_white_and_stateless():
    dot = to_dot(diamond())
    assert '"b" [label="left", tooltip="b", fillcolor="#ffffff"];' in dot
    assert "WAITING" not in dot
    assert 'n1["left"]:::unstarted' in to_mermaid(diamond())


CHORD_DOT = """\
digraph workflow {
  rankdir=LR;
  node [shape=box, style="rounded,filled", fontname="Helvetica"];
  "start" [label="tasks.start\\nSUCCEEDED", tooltip="start", fillcolor="#a8dab5"];
  "h0" [label="tasks.add\\nSUCCEEDED", tooltip="h0", fillcolor="#a8dab5"];
  "h1" [label="tasks.add\\nRUNNING", tooltip="h1", fillcolor="#8ab4f8"];
  "body" [label="tasks.tsum\\nWAITING", tooltip="body", fillcolor="#e0e0e0"];
  "start" -> "h0";
  "start" -> "h1";
  "h0" -> "body";
  "h1" -> "body";
}
"""

CHORD_COLLAPSED_DOT = """\
digraph workflow {
  rankdir=LR;
  node [shape=box, style="rounded,filled", fontname="Helvetica"];
  "start" [label="tasks.start\\nSUCCEEDED", tooltip="start", fillcolor="#a8dab5"];
  "group:h0" [label="tasks.add ×3: 2 RUNNING, 1 SUCCEEDED", tooltip="3 nodes: h0 … h2", \
fillcolor="#8ab4f8"];
  "body" [label="tasks.tsum\\nWAITING", tooltip="body", fillcolor="#e0e0e0"];
  "start" -> "group:h0";
  "group:h0" -> "body";
}
"""

CHORD_COLLAPSED_MERMAID = """\
flowchart LR
  classDef SUCCEEDED fill:#a8dab5,stroke:#555
  classDef RUNNING fill:#8ab4f8,stroke:#555
  classDef WAITING fill:#e0e0e0,stroke:#555
  %% n0: start
  n0["tasks.start<br/>SUCCEEDED"]:::SUCCEEDED
  %% n1: 3 nodes: h0 … h2
  n1["tasks.add ×3: 2 RUNNING, 1 SUCCEEDED"]:::RUNNING
  %% n2: body
  n2["tasks.tsum<br/>WAITING"]:::WAITING
  n0 --> n1
  n1 --> n2
"""


def test_a_chord_is_drawn_node_by_node_up_to_the_collapse_size():
    # Given a chord of two header tasks
    states = bytes([S.SUCCEEDED, S.SUCCEEDED, S.RUNNING, S.WAITING])
    # Then with the default collapse size every node has its box
    assert to_dot(chord(2), states) == CHORD_DOT


def test_a_chord_header_over_the_collapse_size_is_one_box_with_counts():
    # Given a chord of three header tasks, two running, drawn with collapse=2
    states = bytes([S.SUCCEEDED, S.RUNNING, S.SUCCEEDED, S.RUNNING, S.WAITING])
    # Then the header is one box with its count per state, filled as most of it is
    assert to_dot(chord(3), states, collapse=2) == CHORD_COLLAPSED_DOT
    assert to_mermaid(chord(3), states, collapse=2) == CHORD_COLLAPSED_MERMAID


def test_a_group_of_a_thousand_is_one_box():
    # Given start -> 1000 x tasks.add -> tasks.tsum, 990 of the adds done and 10 running
    graph = chord(1000)
    states = bytes([S.SUCCEEDED] + [S.SUCCEEDED] * 990 + [S.RUNNING] * 10 + [S.WAITING])
    # When drawn with the default collapse size (50)
    dot = to_dot(graph, states)
    # Then it has three boxes and two arrows
    assert dot.count("[label=") == 3
    assert dot.count(" -> ") == 2
    assert '"group:h0" [label="tasks.add ×1000: 990 SUCCEEDED, 10 RUNNING"' in dot
    assert f'fillcolor="{PALETTE[S.SUCCEEDED]}"' in dot
    assert to_mermaid(graph, states).count("-->") == 2


def test_text_is_escaped():
    b = GraphBuilder()
    b.add("x", "t.q", b"", label='say "hi" \\ bye')
    graph = b.freeze("x")
    assert 'label="say \\"hi\\" \\\\ bye"' in to_dot(graph)
    assert 'n0["say #quot;hi#quot; \\ bye"]' in to_mermaid(graph)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="states has 1 entries for a graph of 4 nodes"):
        to_dot(diamond(), b"\x00")
    with pytest.raises(ValueError, match="collapse=0: give a group size of at least 1"):
        to_mermaid(diamond(), collapse=0)
    with pytest.raises(ValueError, match="format='pdf': render draws one of svg, png"):
        render("digraph {}", "pdf")


@pytest.mark.skipif(
    shutil.which("dot") is None, reason="Graphviz's dot is not installed (apt-get install graphviz)"
)
def test_dot_renders_an_svg():
    # When a coloured diamond is rendered to SVG by Graphviz
    svg = render(to_dot(diamond(), DIAMOND_STATES), "svg", timeout=30)
    # Then it is an SVG document with one node group per box, its title the task id
    root = ET.fromstring(svg)
    ns = {"svg": "http://www.w3.org/2000/svg"}
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    nodes = [g for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "node"]
    assert sorted(g.find("svg:title", ns).text for g in nodes) == ["a", "b", "c", "d"]
    assert "#f28b82" in svg.decode()
    # And a PNG starts with its signature
    assert render(to_dot(diamond()), "png", timeout=30)[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(
    shutil.which("dot") is None, reason="Graphviz's dot is not installed (apt-get install graphviz)"
)
def test_dot_errors_are_reported():
    with pytest.raises(RenderError, match="Graphviz's dot failed \\(exit 1\\) drawing svg"):
        render("this is not dot", "svg", timeout=30)


def test_a_missing_dot_says_how_to_install_it(monkeypatch):
    # Given no `dot` on PATH (the boundary: the PATH lookup)
    monkeypatch.setenv("PATH", "")
    with pytest.raises(RenderError, match="apt-get install graphviz.*--format dot"):
        render("digraph {}", "svg")
