"""GraphBuilder validation and the expression helpers (pure core, no Celery)."""

from __future__ import annotations

import pytest

from dyrygent.core.builder import GraphBuilder
from dyrygent.core.graph import TRANSITIONS, NodeState, evaluate, expr_refs
from dyrygent.core.states import SETTLED_STATES
from dyrygent.errors import CycleError, DuplicateNodeError, UnknownDependencyError


def build(edges: dict[str, tuple[str, ...]]) -> GraphBuilder:
    b = GraphBuilder()
    for node, parents in edges.items():
        b.add(node, "t", b"", parents=parents)
    return b


def test_freeze_maps_ids_to_indices_and_derives_children():
    # Given a diamond a -> (b, c) -> d whose d takes [b, c]
    b = GraphBuilder()
    b.add("a", "t", b"")
    b.add("b", "t", b"", parents=["a"], input="a")
    b.add("c", "t", b"", parents=["a"], input="a")
    b.add("d", "t", b"", parents=["b", "c"], input=["b", "c"])
    # When frozen
    g = b.freeze(output="d")
    # Then ids become indices, and children are the reverse edges
    assert [n.parents for n in g.nodes] == [(), (0,), (0,), (1, 2)]
    assert g.nodes[3].input == [1, 2]
    assert g.output == 3
    assert g.children == [[1, 2], [3], [3], []]
    assert g.roots() == [0]


def test_duplicate_id_names_the_node_and_the_fix():
    b = build({"a": ()})
    with pytest.raises(DuplicateNodeError, match=r"node 'a' \(t\) was added twice.*clone"):
        b.add("a", "t", b"")


def test_unknown_dependency_names_both_nodes():
    b = build({"a": (), "b": ("zz",)})
    with pytest.raises(UnknownDependencyError, match=r"node 'b' \(t\) depends on 'zz'.*not in"):
        b.freeze()


def test_input_must_come_from_a_dependency():
    b = build({"a": (), "b": ()})
    b.add("c", "t", b"", parents=["a"], input=["a", "b"])
    with pytest.raises(UnknownDependencyError, match=r"node 'c' \(t\) takes the result of 'b'"):
        b.freeze()


def test_cycle_is_reported_with_its_nodes():
    b = build({"a": ("c",), "b": ("a",), "c": ("b",)})
    with pytest.raises(CycleError, match=r"cycle: .* -> .*remove one") as info:
        b.freeze()
    assert set(info.value.cycle) == {"a", "b", "c"}


def test_output_outside_graph_is_rejected():
    with pytest.raises(UnknownDependencyError, match="workflow result refers to 'x'"):
        build({"a": ()}).freeze(output=["a", "x"])


def test_duplicate_parents_are_collapsed_in_order():
    b = GraphBuilder()
    b.add("a", "t", b"")
    b.add("b", "t", b"")
    b.add("c", "t", b"", parents=["b", "a", "b"])
    assert b.freeze().nodes[2].parents == (1, 0)


@pytest.mark.parametrize(
    "expr, refs, value",
    [
        (None, [], None),
        (0, [0], "r0"),
        ([1, 0], [1, 0], ["r1", "r0"]),
        ([0, [1, [2]], []], [0, 1, 2], ["r0", ["r1", ["r2"]], []]),
    ],
)
def test_expressions(expr, refs, value):
    results = {0: "r0", 1: "r1", 2: "r2"}
    assert list(expr_refs(expr)) == refs
    assert evaluate(expr, results) == value


def test_transitions_move_forward_and_only_retry_and_relaunch_move_back():
    # Given the table; then every state has an entry, settled states only go back to
    # WAITING (a retry), in-flight ones only to READY (a relaunch: their worker was lost),
    # and nothing else ever returns to an earlier state
    assert set(TRANSITIONS) == set(NodeState)
    order = [NodeState.WAITING, NodeState.READY, NodeState.LAUNCHED, NodeState.RUNNING]
    for old, news in TRANSITIONS.items():
        if old in SETTLED_STATES:
            assert news == {NodeState.WAITING}
            continue
        for new in news:
            relaunch = old in (NodeState.LAUNCHED, NodeState.RUNNING) and new is NodeState.READY
            assert relaunch or new in SETTLED_STATES or order.index(new) > order.index(old)
    assert NodeState.READY in TRANSITIONS[NodeState.LAUNCHED]
    assert NodeState.READY in TRANSITIONS[NodeState.RUNNING]
    assert NodeState.WAITING not in TRANSITIONS[NodeState.RUNNING]
    assert TRANSITIONS[NodeState.WAITING] >= {NodeState.READY, NodeState.UPSTREAM_FAILED}
    assert NodeState.FAILED not in TRANSITIONS[NodeState.WAITING]
    assert NodeState.SUCCEEDED not in TRANSITIONS[NodeState.READY]
