"""Run-time fan-out (dyrygent.expand) end to end on a real Redis and worker."""

from __future__ import annotations

import pytest
from celery import chain, group

from dyrygent import ExpandError, Workflow, expand
from dyrygent.engine.stores import store_for
from tests.harness import wait_for


def run(app, canvas, **settings):
    wf = Workflow(app=app, **settings)
    wf.add_celery_canvas(canvas)
    return wf, wf.apply_async()


def ended(app, wf) -> bytes:
    store = store_for(app)
    wait_for(lambda: store.status(wf.id).status not in (None, "running"), 20, "the end")
    return store.status(wf.id).states


@pytest.mark.parametrize(
    "n", [0, 1, 100, pytest.param(10_000, marks=[pytest.mark.slow, pytest.mark.timeout(600)])]
)
def test_a_fan_out_over_a_result_runs_one_node_per_item_in_item_order(app, t, ledger, n):
    # Given a chain whose middle step runs once per item of the first step's result
    wf, result = run(app, chain(t.identity.si(list(range(n))), expand(t.add.s(10)), t.echo.s()))
    # Then the last step gets the items' results in item order
    assert result.get(timeout=30 if n < 1000 else 300) == [[[i + 10 for i in range(n)]], {}]
    # and each item ran once, as its own node with its own id
    runs = ledger.runs()
    expanded = [e for e in ledger.entries() if e[1] == "t.add"]
    assert sorted(e[2][0] for e in expanded) == list(range(n))
    assert all(runs[e[0]] == 1 for e in expanded)
    states = ended(app, wf)
    assert len(states) == len(wf.nodes) + n and set(states) == {2}  # every node SUCCEEDED


def test_a_chain_and_a_group_per_item_and_nested_expansions(app, t, ledger):
    # Given an expansion of a chain per item, and one of a group per item
    _, chained = run(app, chain(t.identity.si([1, 2]), expand(chain(t.add.s(1), t.mul.s(10)))))
    _, grouped = run(app, chain(t.identity.si([1, 2]), expand(group(t.add.s(1), t.mul.s(3)))))
    # and an expansion nested in another: one inner fan-out per outer item
    _, nested = run(
        app,
        chain(t.identity.si([[1, 2], [3]]), expand(expand(t.add.s(100)))),
    )
    assert chained.get(timeout=30) == [20, 30]
    assert grouped.get(timeout=30) == [[2, 3], [3, 6]]
    assert nested.get(timeout=30) == [[101, 102], [103]]


def test_a_failing_item_fails_the_expansion_and_the_steps_after_it(app, t, ledger):
    import workerapp

    wf, result = run(app, chain(t.identity.si([1, 2]), expand(t.fail.s()), t.echo.s(never=1)))
    with pytest.raises(workerapp.ExpectedError):
        result.get(timeout=30)
    ended(app, wf)
    assert not [e for e in ledger.entries() if e[3].get("never")]


def test_an_input_that_is_no_list_or_over_the_cap_fails_the_expand_node(app, t):
    _, not_a_list = run(app, chain(t.identity.si(5), expand(t.add.s(1))))
    with pytest.raises(ExpandError, match=r"got int 5: its parent must return a list"):
        not_a_list.get(timeout=30)
    _, too_many = run(app, chain(t.identity.si([1, 2, 3]), expand(t.add.s(1))), max_expand=2)
    with pytest.raises(ExpandError, match=r"got 3 items, over max_expand=2: raise Workflow"):
        too_many.get(timeout=30)


def test_add_signature_takes_an_expand_after_dependencies(app, t):
    wf = Workflow(app=app)
    hosts = wf.add_signature(t.identity.si(["a", "b"]))
    checks = wf.add_signature(expand(t.echo.s("checked")), hosts)
    wf.add_signature(t.identity.s(), checks)
    assert wf.apply_async().get(timeout=30) == [[["a", "checked"], {}], [["b", "checked"], {}]]


def test_pictures_and_the_command_line_show_the_expanded_nodes(app, t, env):
    import os
    import subprocess
    import sys

    from dyrygent import WorkflowResult

    # Given a finished fan-out over 3 items
    wf, result = run(app, chain(t.identity.si([1, 2, 3]), expand(t.add.s(10)), t.tsum.s()))
    assert result.get(timeout=30) == 36
    ended(app, wf)
    # Then its picture has the 3 expanded nodes (every node drawn, all succeeded)
    dot = WorkflowResult(wf.id, app=app, nodes=wf.nodes).to_dot()
    assert dot.count('"t.add') + dot.count("t.add\\n") + dot.count('label="t.add') >= 1
    graph_nodes = [line for line in dot.splitlines() if "[" in line and "->" not in line]
    assert len([n for n in graph_nodes if "t.add" in n]) == 3
    # and `show --json` lists them with their states
    out = subprocess.run(
        [sys.executable, "-m", "dyrygent", "show", wf.id, "--json", "-A", "workerapp"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, **env, "PYTHONPATH": "tests/integration:."},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    import json

    shown = json.loads(out.stdout)
    assert shown["progress"]["total"] == 6
    assert sorted(n["task"] for n in shown["nodes"]).count("t.add") == 3
