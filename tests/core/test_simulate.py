"""simulate: the waves a workflow would run in if every node succeeded (pure core)."""

from __future__ import annotations

from hypothesis import given, settings

from dyrygent.core.graph import NodeState
from dyrygent.core.simulate import simulate
from tests.core.test_tick import DIAMOND, dags, graph


def reference_waves(g) -> list[list[int]]:
    """Independent reference: a node's wave is one more than its deepest parent's."""
    depth: list[int] = []
    for node in g.nodes:  # parents come first (index order is topological)
        depth.append(1 + max((depth[p] for p in node.parents), default=-1))
    waves: list[list[int]] = [[] for _ in range(max(depth, default=-1) + 1)]
    for i, d in enumerate(depth):
        waves[d].append(i)
    return waves


def test_a_diamond_runs_in_three_waves():
    # Given a -> (b, c) -> d, When simulated, Then a, then b and c together, then d
    assert simulate(DIAMOND) == [[0], [1, 2], [3]]


def test_nodes_already_succeeded_do_not_run_and_free_their_children():
    # Given the diamond with a already SUCCEEDED (skipped), Then b and c run first
    states = bytes([NodeState.SUCCEEDED, 0, 0, 0])
    assert simulate(DIAMOND, states) == [[1, 2], [3]]


def test_an_empty_graph_runs_nothing_and_a_chain_runs_one_node_a_wave():
    assert simulate(graph({})) == []
    assert simulate(graph({"a": (), "b": ("a",), "c": ("b",)})) == [[0], [1], [2]]


@settings(max_examples=100, deadline=None)
@given(g=dags())
def test_simulated_waves_match_the_depths_of_a_random_dag(g):
    assert simulate(g) == reference_waves(g)
