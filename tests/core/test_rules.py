"""Start rules (Airflow's trigger rules): a hand-derived table for two parents, and
properties over every combination of three (pure core)."""

from __future__ import annotations

import itertools

import pytest

from dyrygent.core.rules import TriggerRule, count_parents, decide
from dyrygent.core.states import NodeState

S, F, K, W = NodeState.SUCCEEDED, NodeState.FAILED, NodeState.SKIPPED, NodeState.WAITING
U = NodeState.UPSTREAM_FAILED
FATES = {"R": NodeState.READY, "W": NodeState.WAITING, "K": NodeState.SKIPPED, "X": U}
COMBOS = ["SS", "SF", "SK", "SW", "FF", "FK", "FW", "KK", "KW", "WW"]
PARENT = {"S": S, "F": F, "K": K, "W": W}

# Derived by hand from Airflow's documented meanings (S succeeded, F failed, K skipped,
# W not settled; R ready, W wait, K skipped, X upstream-failed), one column per COMBOS entry.
TABLE = {
    "all_success": "RXKWXXXKKW",
    "all_failed": "KKKKRKWKKW",
    "all_done": "RRRWRRWRWW",
    "all_done_min_one_success": "RRRWXXWKWW",
    "all_skipped": "KKKKKKKRWW",
    "one_success": "RRRRXXWKWW",
    "one_failed": "KRKWRRRKWW",
    "one_done": "RRRRRRRKWW",
    "none_failed": "RXRWXXXRWW",
    "none_failed_min_one_success": "RXRWXXXKWW",
    "none_skipped": "RRKWRKWKKW",
    "always": "RRRRRRRRRR",
}


def test_the_table_covers_every_rule():
    assert set(TABLE) == {r.value for r in TriggerRule}


@pytest.mark.parametrize("rule", sorted(TABLE))
@pytest.mark.parametrize("combo", range(len(COMBOS)))
def test_two_parents_in_either_order(rule, combo):
    parents = [PARENT[c] for c in COMBOS[combo]]
    expected = FATES[TABLE[rule][combo]]
    for order in (parents, parents[::-1]):
        assert decide(TriggerRule(rule), count_parents(order)) is expected, (rule, order)


def test_upstream_failed_and_cancelled_parents_count_as_failed():
    for bad in (U, NodeState.CANCELLED):
        assert decide(TriggerRule.ALL_SUCCESS, count_parents([S, bad])) is U
        assert decide(TriggerRule.ONE_FAILED, count_parents([bad, W])) is NodeState.READY


@pytest.mark.parametrize("rule", list(TriggerRule))
def test_three_parents_decide_once_and_for_all(rule):
    """Over every combination of three parents: settled parents always decide; a decision
    taken while some parents are unsettled holds whatever they become: a node started early
    would start late too, and one settled early would not run late either (which of SKIPPED
    and UPSTREAM_FAILED it gets may depend on the order parents settle in, as in Airflow)."""
    outcomes = [S, F, K]
    for parents in itertools.product([S, F, K, W], repeat=3):
        fate = decide(rule, count_parents(list(parents)))
        if W not in parents:
            assert fate is not NodeState.WAITING, (rule, parents)
            continue
        if fate is NodeState.WAITING:
            continue
        waiting = [i for i, p in enumerate(parents) if p is W]
        for filled in itertools.product(outcomes, repeat=len(waiting)):
            final = list(parents)
            for i, o in zip(waiting, filled):
                final[i] = o
            late = decide(rule, count_parents(final))
            assert (late is NodeState.READY) == (fate is NodeState.READY), (rule, parents, final)


def test_an_unknown_rule_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown trigger rule 'maybe': use one of all_success"):
        TriggerRule.parse("maybe")
