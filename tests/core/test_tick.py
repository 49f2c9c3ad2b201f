"""plan_tick: table-driven waves, failure blocking, publish failures (pure core)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dyrygent.core.builder import GraphBuilder
from dyrygent.core.graph import NodeKind, NodeState
from dyrygent.core.rules import TriggerRule
from dyrygent.core.tick import (
    Outcome,
    apply_changes,
    find_all,
    in_flight,
    plan_cancel,
    plan_retry,
    plan_tick,
)

W, R, L, S, F, U, K, C, X = (
    NodeState.WAITING,
    NodeState.READY,
    NodeState.LAUNCHED,
    NodeState.SUCCEEDED,
    NodeState.FAILED,
    NodeState.RUNNING,
    NodeState.SKIPPED,
    NodeState.CANCELLED,
    NodeState.UPSTREAM_FAILED,
)


def graph(edges: dict[str, tuple[str, ...]]):
    b = GraphBuilder()
    for node, parents in edges.items():
        b.add(node, "t", b"", parents=parents)
    return b.freeze()


DIAMOND = graph({"a": (), "b": ("a",), "c": ("a",), "d": ("b", "c")})


#: two independent branches: a -> b, and c -> d
BRANCHES = graph({"a": (), "b": ("a",), "c": (), "d": ("c",)})


@pytest.mark.parametrize(
    "g, states, observed, changes, ready, status, ended",
    [
        # first tick: the root becomes ready
        (DIAMOND, [W, W, W, W], {}, {0: R}, [0], None, False),
        # root still running: nothing to do
        (DIAMOND, [L, W, W, W], {0: Outcome.RUNNING}, {}, [], None, False),
        # root succeeded: both branches ready in one wave
        (DIAMOND, [L, W, W, W], {0: Outcome.SUCCEEDED}, {0: S, 1: R, 2: R}, [1, 2], None, False),
        # one branch done: the join is not ready yet
        (
            DIAMOND,
            [S, L, L, W],
            {1: Outcome.SUCCEEDED, 2: Outcome.RUNNING},
            {1: S},
            [],
            None,
            False,
        ),
        # second branch done: the join becomes ready
        (DIAMOND, [S, S, L, W], {2: Outcome.SUCCEEDED}, {2: S, 3: R}, [3], None, False),
        # last node done: the workflow succeeded and ends
        (DIAMOND, [S, S, S, L], {3: Outcome.SUCCEEDED}, {3: S}, [], "succeeded", True),
        # a READY node whose publish failed last tick is offered again
        (DIAMOND, [S, R, L, W], {2: Outcome.RUNNING}, {}, [1], None, False),
        # a node seen started is recorded RUNNING; seen again, nothing changes
        (DIAMOND, [L, W, W, W], {0: Outcome.STARTED}, {0: U}, [], None, False),
        (DIAMOND, [U, W, W, W], {0: Outcome.STARTED}, {}, [], None, False),
        (DIAMOND, [U, W, W, W], {0: Outcome.SUCCEEDED}, {0: S, 1: R, 2: R}, [1, 2], None, False),
        # the root fails: every descendant is upstream-failed at once, the workflow ends FAILED
        (DIAMOND, [L, W, W, W], {0: Outcome.FAILED}, {0: F, 1: X, 2: X, 3: X}, [], "failed", True),
        # a branch fails while the other succeeds: the join is upstream-failed
        (
            DIAMOND,
            [S, L, L, W],
            {1: Outcome.FAILED, 2: Outcome.SUCCEEDED},
            {1: F, 2: S, 3: X},
            [],
            "failed",
            True,
        ),
        # a branch fails while the other runs: decided FAILED, not ended, the other goes on
        (DIAMOND, [S, L, L, W], {1: Outcome.FAILED}, {1: F, 3: X}, [], "failed", False),
        # independent branches: a failure in one does not stop the other
        (
            BRANCHES,
            [L, W, L, W],
            {0: Outcome.FAILED, 2: Outcome.SUCCEEDED},
            {0: F, 1: X, 2: S, 3: R},
            [3],
            "failed",
            False,
        ),
        (BRANCHES, [F, X, S, L], {3: Outcome.SUCCEEDED}, {3: S}, [], "failed", True),
    ],
)
def test_waves(g, states, observed, changes, ready, status, ended):
    plan = plan_tick(g, bytes(states), observed)
    assert plan.changes == changes
    assert plan.ready == ready
    assert plan.verdict.status == status
    assert plan.done is ended


def test_the_tick_that_decides_a_failure_says_so_once_with_its_culprit():
    # Given two branches, one failing while the other runs
    plan = plan_tick(BRANCHES, bytes([L, W, L, W]), {0: Outcome.FAILED})
    # Then this tick decided the outcome, and node 0's error is the workflow's
    assert plan.decided and plan.verdict.culprit == 0 and not plan.done
    # When the other branch goes on, the outcome stays decided, not decided again
    later = plan_tick(BRANCHES, bytes([F, X, L, W]), {2: Outcome.SUCCEEDED})
    assert not later.decided and later.verdict.status == "failed" and later.ready == [3]


def test_fail_fast_cancels_what_has_not_started_and_ends_at_once():
    # Given independent branches and fail_fast
    plan = plan_tick(BRANCHES, bytes([L, W, L, W]), {0: Outcome.FAILED}, fail_fast=True)
    # Then the failure ends the workflow; the waiting node of the other branch is cancelled
    assert plan.changes == {0: F, 1: C, 3: C}
    assert plan.ready == [] and plan.done and plan.verdict.status == "failed"
    assert plan.verdict.culprit == 0


def test_a_culprit_is_the_failed_ancestor_of_the_first_failing_leaf():
    # Given a chain a -> b -> c where b failed: the leaf c is upstream-failed
    g = graph({"a": (), "b": ("a",), "c": ("b",)})
    plan = plan_tick(g, bytes([S, L, W]), {1: Outcome.FAILED})
    assert plan.changes == {1: F, 2: X}
    assert plan.verdict.culprit == 1


def test_a_skipped_parent_skips_an_all_success_child_and_the_workflow_succeeds():
    # Given a -> b and a -> c where b was skipped (a branch not taken)
    g = graph({"a": (), "b": ("a",), "c": ("b",)})
    plan = plan_tick(g, bytes([S, K, W]), {})
    assert plan.changes == {2: K}
    assert plan.verdict.status == "succeeded" and plan.done


def test_rules_other_than_all_success_decide_with_failed_parents():
    # Given a -> b (fails) and a cleanup node c after b with all_done
    b = GraphBuilder()
    b.add("a", "t", b"")
    b.add("b", "t", b"", parents=["a"])
    b.add("c", "t", b"", parents=["b"], rule=TriggerRule.ALL_DONE)
    g = b.freeze()
    plan = plan_tick(g, bytes([S, L, W]), {1: Outcome.FAILED})
    # Then the cleanup is ready; the workflow's outcome waits for it (its leaf)
    assert plan.changes == {1: F, 2: R} and plan.ready == [2]
    assert plan.verdict.status is None
    done = plan_tick(g, bytes([S, F, L]), {2: Outcome.SUCCEEDED})
    assert done.verdict.status == "succeeded" and done.done


def test_plan_retry_reopens_what_did_not_succeed():
    # Given a finished, failed diamond: a succeeded, b failed, c succeeded, d upstream-failed
    states = bytes([S, F, S, X])
    assert plan_retry(DIAMOND, states) == {1: W, 3: W}
    # and, given nodes, those and their descendants, succeeded ones included
    assert plan_retry(DIAMOND, states, [2]) == {2: W, 3: W}
    # When the reopened states are planned, the nodes are decided again from scratch
    reopened = bytearray(states)
    apply_changes(reopened, plan_retry(DIAMOND, states))
    assert plan_tick(DIAMOND, bytes(reopened), {}).ready == [1]


def test_plan_retry_refuses_nodes_in_flight():
    with pytest.raises(ValueError, match="is LAUNCHED: wait for the workflow to end"):
        plan_retry(DIAMOND, bytes([S, L, S, W]), [1])


def test_plan_cancel_cancels_every_node_not_settled():
    assert plan_cancel(bytes([S, L, U, W, R, F])) == {1: C, 2: C, 3: C, 4: C}


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


def reference_final_states(g, fails: set[int]) -> list[int]:
    """Independent reference: with all_success everywhere, a node runs iff every parent
    succeeded; it then succeeds unless it is one that fails; otherwise it is upstream-failed.
    (Nodes are added parents first, so index order is topological.)"""
    final: list[int] = []
    for i, node in enumerate(g.nodes):
        if all(final[p] == S for p in node.parents):
            final.append(F if i in fails else S)
        else:
            final.append(X)
    return final


@settings(max_examples=200, deadline=None)
@given(
    g=dags(),
    seed=st.integers(0, 2**32 - 1),
    fails=st.sets(st.integers(0, 29), max_size=3),
)
def test_simulated_runs_match_an_independent_reference(g, seed, fails):
    """Drive random DAGs with random completion orders and publish failures, as the processor
    would. Every node launches at most once, only after all its parents succeeded; every
    node ends settled as the reference says; the verdict is FAILED iff a leaf did not
    succeed, and is decided by exactly one tick."""
    rnd = random.Random(seed)
    states = bytearray(len(g))
    launched_order: list[int] = []
    decided = 0
    for _ in range(200 * len(g) + 50):  # ends far sooner; bounded anyway
        running = in_flight(states)
        finished = {
            i: (Outcome.FAILED if i in fails else Outcome.SUCCEEDED)
            for i in running
            if rnd.random() < 0.5
        }
        finished.update(
            {i: Outcome.STARTED for i in running if i not in finished and rnd.random() < 0.3}
        )
        plan = plan_tick(g, bytes(states), finished)
        apply_changes(states, plan.changes)
        decided += plan.decided
        if plan.done:
            break
        for i in plan.ready:
            assert all(states[p] == S for p in g.nodes[i].parents)
            if rnd.random() < 0.1:  # a publish failure: this one and the rest stay READY
                break
            states[i] = L
            launched_order.append(i)
    assert plan.done
    assert len(set(launched_order)) == len(launched_order)
    expected = reference_final_states(g, fails)
    assert list(states) == expected
    assert sorted(launched_order) == [i for i, s in enumerate(expected) if s != X]
    leaves_ok = all(expected[i] == S for i in g.leaves)
    assert plan.verdict.status == ("succeeded" if leaves_ok else "failed")
    assert decided == 1


def branching():
    """choose -> {left, right}; left -> after_left; join(after_left, right) with
    none_failed_min_one_success, as Airflow's docs join branches."""
    b = GraphBuilder()
    b.add("choose", "t.choose", b"", kind=NodeKind.BRANCH)
    b.add("left", "t.left", b"", parents=["choose"], label="left")
    b.add("right", "t.right", b"", parents=["choose"], label="right")
    b.add("after_left", "t.after", b"", parents=["left"])
    b.add(
        "join",
        "t.join",
        b"",
        parents=["after_left", "right"],
        rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
    )
    return b.freeze()


def test_a_branch_skips_the_children_it_did_not_choose_and_the_skip_propagates():
    g = branching()
    # Given the branch node succeeded choosing "right"
    plan = plan_tick(g, bytes([L, W, W, W, W]), {0: Outcome.SUCCEEDED}, choices={0: {"right"}})
    # Then left and its descendant are skipped, right is ready, the join waits for right
    assert plan.changes == {0: S, 1: K, 2: R, 3: K}
    assert plan.ready == [2]
    # When right succeeds, the join runs (one success, no failure)
    later = plan_tick(g, bytes([S, K, L, K, W]), {2: Outcome.SUCCEEDED})
    assert later.changes == {2: S, 4: R}
    # and once it succeeded, the workflow succeeds: its skipped nodes are no failure
    end = plan_tick(g, bytes([S, K, S, K, L]), {4: Outcome.SUCCEEDED})
    assert end.verdict.status == "succeeded" and end.done


def test_a_branch_choosing_every_child_skips_nothing():
    g = branching()
    plan = plan_tick(
        g, bytes([L, W, W, W, W]), {0: Outcome.SUCCEEDED}, choices={0: {"left", "right"}}
    )
    assert plan.changes == {0: S, 1: R, 2: R}
