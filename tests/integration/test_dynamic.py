"""Graphs that decide at run time, end to end on a real Redis and worker: start rules
(cleanup with all_done, an alert with one_failed) and branches with a join."""

from __future__ import annotations

import pytest
from celery import chain
from celery.result import AsyncResult

from dyrygent import BranchError, Workflow
from dyrygent.engine.stores import store_for
from tests.harness import wait_for


def final_states(app, wf) -> dict[str, str]:
    """Each node's state by label once the workflow ended."""
    store = store_for(app)
    wait_for(lambda: store.status(wf.id).status not in (None, "running"), 15, "the end")
    raw = store.status(wf.id).states
    from dyrygent.core.states import NodeState

    return {n.label: NodeState(raw[i]).name for i, n in enumerate(wf.nodes)}


def test_a_cleanup_with_all_done_runs_after_a_failure_and_gets_none(app, t, ledger):
    import workerapp

    # Given work that fails, and a cleanup after it with all_done
    wf = Workflow(app=app)
    work = wf.add_celery_canvas(chain(t.add.si(1, 1), t.fail.s()), label="work")
    cleanup = wf.add_signature(t.echo.s("cleanup"), work, label="cleanup", trigger_rule="all_done")
    result = wf.apply_async()
    # Then the cleanup ran, with None for the failed parent's result, and succeeded
    wait_for(lambda: cleanup.id in ledger.runs(), 15, "the cleanup to run")
    assert ledger.args_of()[cleanup.id] == [[None, "cleanup"], {}]
    states = final_states(app, wf)
    assert states["cleanup"] == "SUCCEEDED" and states["work/t.fail"] == "FAILED"
    # and the workflow succeeded: its one leaf (the cleanup) succeeded, as in Airflow
    assert result.get(timeout=15) == [[None, "cleanup"], {}]
    assert AsyncResult(wf.id, app=app).state == "SUCCESS"
    with pytest.raises(workerapp.ExpectedError):
        AsyncResult(work[0].id, app=app).get(timeout=5)


def test_an_alert_with_one_failed_runs_only_when_something_failed(app, t, ledger):
    # Given two workflows of two parallel steps with an alert (one_failed) after them
    def build(second):
        wf = Workflow(app=app)
        a = wf.add_signature(t.add.si(1, 1), label="a")
        b = wf.add_signature(second, label="b")
        wf.add_signature(t.echo.si("alert"), [a, b], label="alert", trigger_rule="one_failed")
        return wf

    healthy, broken = build(t.add.si(2, 2)), build(t.fail.si())
    healthy.apply_async()
    broken.apply_async()
    # Then the alert runs in the broken one only; in the healthy one it is SKIPPED
    assert final_states(app, broken)["alert"] == "SUCCEEDED"
    assert final_states(app, healthy)["alert"] == "SKIPPED"
    assert healthy.nodes[2].id not in ledger.runs()


def test_a_branch_skips_the_path_not_chosen_and_the_join_runs(app, t, ledger):
    # Given choose -> {left -> after_left, right} -> join (none_failed_min_one_success)
    wf = Workflow(app=app)
    choose = wf.add_signature(t.identity.si("right"), label="choose", branch=True)
    left = wf.add_signature(t.echo.si("left"), choose, label="left")
    after = wf.add_signature(t.echo.si("after_left"), left, label="after_left")
    right = wf.add_signature(t.echo.si("right"), choose, label="right")
    join = wf.add_signature(
        t.echo.s(), [after, right], label="join", trigger_rule="none_failed_min_one_success"
    )
    result = wf.apply_async()
    # Then the join got [None (skipped), right's result], and the skipped path never ran
    assert result.get(timeout=15) == [[[None, [["right"], {}]]], {}]
    states = final_states(app, wf)
    assert states == {
        "choose": "SUCCEEDED",
        "left": "SKIPPED",
        "after_left": "SKIPPED",
        "right": "SUCCEEDED",
        "join": "SUCCEEDED",
    }
    runs = ledger.runs()
    assert left.id not in runs and after.id not in runs and join.id in runs


def test_a_branch_naming_no_child_fails_with_the_labels_it_could_return(app, t, ledger):
    wf = Workflow(app=app)
    choose = wf.add_signature(t.identity.si("middle"), label="choose", branch=True)
    wf.add_signature(t.echo.si("left"), choose, label="left")
    wf.add_signature(t.echo.si("right"), choose, label="right")
    result = wf.apply_async()
    with pytest.raises(
        BranchError,
        match=r"returned 'middle': return the label of one of its "
        r"children, or a list of them: left, right",
    ):
        result.get(timeout=15)
    assert final_states(app, wf) == {
        "choose": "FAILED",
        "left": "UPSTREAM_FAILED",
        "right": "UPSTREAM_FAILED",
    }


def test_a_retry_keeps_a_branch_s_choice(app, t, ledger):
    # Given a branch that chose "fast", whose fast path failed once
    wf = Workflow(app=app)
    choose = wf.add_signature(t.identity.si("fast"), label="choose", branch=True)
    fast = wf.add_signature(t.fail_once.si(1, f"fast-{wf.id}"), choose, label="fast")
    slow = wf.add_signature(t.echo.si("slow"), choose, label="slow")
    result = wf.apply_async()
    with pytest.raises(Exception, match="first run for fast"):
        result.get(timeout=15)
    final_states(app, wf)
    # When it is retried
    assert result.retry() is True
    # Then the fast path runs again and succeeds, and the path not chosen never runs (the
    # workflow's value is its last node's, the skipped slow path: None)
    assert AsyncResult(wf.id, app=app).get(timeout=15) is None
    assert final_states(app, wf) == {"choose": "SUCCEEDED", "fast": "SUCCEEDED", "slow": "SKIPPED"}
    runs = ledger.runs()
    assert runs[fast.id] == 2 and slow.id not in runs and runs[choose.id] == 1


def test_rules_and_branches_given_as_signature_options_inside_a_canvas(app, t, ledger):
    from celery import group

    from dyrygent import InvalidNodeError, branch

    # Given a canvas whose first step is a branch choosing the child named "t.add"
    wf = Workflow(app=app)
    wf.add_celery_canvas(
        chain(branch(t.identity.si("t.add")), group(t.echo.si("a"), t.add.si(1, 2)))
    )
    # Then only that child runs (the other is skipped: None in the group's value)
    assert wf.apply_async().get(timeout=15) == [None, 3]
    assert final_states(app, wf) == {
        "t.identity": "SUCCEEDED",
        "t.echo": "SKIPPED",
        "t.add": "SUCCEEDED",
    }
    # And a start rule set on a signature is consumed: the cleanup runs after a failure
    wf2 = Workflow(app=app)
    wf2.add_celery_canvas(chain(t.fail.si(), t.echo.si("cleanup").set(trigger_rule="all_done")))
    assert wf2.apply_async().get(timeout=15) == [["cleanup"], {}]
    # And an unknown rule is refused at build time, naming the node and the valid rules
    with pytest.raises(InvalidNodeError, match=r"unknown trigger rule 'later': use one of"):
        Workflow(app=app).add_celery_canvas(t.echo.si("x").set(trigger_rule="later"))
