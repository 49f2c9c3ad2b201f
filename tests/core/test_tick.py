"""plan_tick: table-driven waves, failure blocking, publish failures (pure core)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dyrygent.core.graph import GraphBuilder, NodeState
from dyrygent.core.tick import Outcome, apply_changes, find_all, in_flight, plan_tick

W, R, L, S, F, U = (
    NodeState.WAITING,
    NodeState.READY,
    NodeState.LAUNCHED,
    NodeState.SUCCEEDED,
    NodeState.FAILED,
    NodeState.RUNNING,
)


def graph(edges: dict[str, tuple[str, ...]]):
    b = GraphBuilder()
    for node, parents in edges.items():
        b.add(node, "t", b"", parents=parents)
    return b.freeze()


DIAMOND = graph({"a": (), "b": ("a",), "c": ("a",), "d": ("b", "c")})


@pytest.mark.parametrize(
    "states, observed, changes, ready, done, failed",
    [
        # first tick: the root becomes ready
        ([W, W, W, W], {}, {0: R}, [0], False, None),
        # root still running: nothing to do
        ([L, W, W, W], {0: Outcome.RUNNING}, {}, [], False, None),
        # root succeeded: both branches ready in one wave
        ([L, W, W, W], {0: Outcome.SUCCEEDED}, {0: S, 1: R, 2: R}, [1, 2], False, None),
        # one branch done: the join is not ready yet
        ([S, L, L, W], {1: Outcome.SUCCEEDED, 2: Outcome.RUNNING}, {1: S}, [], False, None),
        # second branch done: the join becomes ready
        ([S, S, L, W], {2: Outcome.SUCCEEDED}, {2: S, 3: R}, [3], False, None),
        # last node done: the workflow is done
        ([S, S, S, L], {3: Outcome.SUCCEEDED}, {3: S}, [], True, None),
        # a READY node whose publish failed last tick is offered again
        ([S, R, L, W], {2: Outcome.RUNNING}, {}, [1], False, None),
        # a node seen started is recorded RUNNING; seen again, nothing changes
        ([L, W, W, W], {0: Outcome.STARTED}, {0: U}, [], False, None),
        ([U, W, W, W], {0: Outcome.STARTED}, {}, [], False, None),
        ([U, W, W, W], {0: Outcome.SUCCEEDED}, {0: S, 1: R, 2: R}, [1, 2], False, None),
        # a failure blocks everything: nothing becomes ready
        ([L, W, W, W], {0: Outcome.FAILED}, {0: F}, [], False, 0),
        ([S, L, L, W], {1: Outcome.FAILED, 2: Outcome.SUCCEEDED}, {1: F, 2: S}, [], False, 1),
    ],
)
def test_waves(states, observed, changes, ready, done, failed):
    plan = plan_tick(DIAMOND, bytes(states), observed)
    assert plan.changes == changes
    assert plan.ready == ready
    assert plan.done is done
    assert plan.failed == failed


def test_an_empty_graph_is_done_at_once():
    plan = plan_tick(graph({}), b"", {})
    assert plan.done and not plan.ready


def test_illegal_observation_is_refused():
    with pytest.raises(ValueError, match="illegal transition WAITING -> SUCCEEDED"):
        plan_tick(DIAMOND, bytes([W, W, W, W]), {0: Outcome.SUCCEEDED})


def test_state_length_must_match():
    with pytest.raises(ValueError, match="3 entries for a graph of 4"):
        plan_tick(DIAMOND, bytes(3), {})


def test_find_all_and_in_flight():
    assert find_all(bytes([L, S, L, L, W]), L) == [0, 2, 3]
    assert find_all(b"", L) == []
    assert in_flight(bytes([L, S, U, L, W, U])) == [0, 2, 3, 5]


@st.composite
def dags(draw):
    n = draw(st.integers(0, 30))
    edges = {}
    for i in range(n):
        parents = draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True)) if i else []
        edges[f"n{i}"] = tuple(f"n{p}" for p in parents)
    return graph(edges)


@settings(max_examples=150, deadline=None)
@given(g=dags(), seed=st.integers(0, 2**32 - 1), fail_at=st.one_of(st.none(), st.integers(0, 29)))
def test_simulated_runs_respect_dependencies(g, seed, fail_at):
    """Drive random DAGs with random completion orders, as the processor would.

    Every node launches exactly once, only after all its parents succeeded; with a failure,
    nothing launches after it is observed and no descendant of it ever launches.
    """
    rnd = random.Random(seed)
    states = bytearray(len(g))
    launched_order: list[int] = []
    observed_failure = False
    for _ in range(200 * len(g) + 50):  # ends far sooner; bounded anyway
        running = in_flight(states)
        finished = {
            i: (Outcome.FAILED if i == fail_at else Outcome.SUCCEEDED)
            for i in running
            if rnd.random() < 0.5
        }
        finished.update(
            {i: Outcome.STARTED for i in running if i not in finished and rnd.random() < 0.3}
        )
        plan = plan_tick(g, bytes(states), finished)
        apply_changes(states, plan.changes)
        if plan.failed is not None:
            observed_failure = True
            assert not plan.ready
            break
        if plan.done:
            break
        for i in plan.ready:
            assert all(states[p] == S for p in g.nodes[i].parents)
            if rnd.random() < 0.1:  # a publish failure: this one and the rest stay READY
                break
            states[i] = L
            launched_order.append(i)
    assert len(set(launched_order)) == len(launched_order)
    if fail_at is not None and fail_at < len(g) and fail_at in launched_order:
        assert observed_failure
        descendants, stack = set(), [fail_at]
        while stack:
            for c in g.children[stack.pop()]:
                if c not in descendants:
                    descendants.add(c)
                    stack.append(c)
        assert not descendants & set(launched_order)
    elif fail_at is None or fail_at >= len(g):
        assert sorted(launched_order) == list(range(len(g)))
        assert all(s == S for s in states)
