"""The graph a definition builds: hooks, the result node and the run's outcome (no broker)."""

from __future__ import annotations

import pytest
from celery import Celery

from dyrygent import load_definitions
from dyrygent.core.graph import NodeState
from dyrygent.core.outcome import verdict
from dyrygent.core.rules import TriggerRule
from dyrygent.core.states import WorkflowStatus
from dyrygent.core.tick import plan_tick
from dyrygent.engine.spec import decode_spec


def noop(*args, **kwargs):
    return None


@pytest.fixture
def app():
    app = Celery("proj", set_as_current=False)
    for name in ("A", "B", "C", "OK", "KO"):
        app.task(name=name, shared=False)(noop)
    return app


def build(app, body, payload=None):
    defs = load_definitions({"p.D": body}, app=app)
    wf = defs.build("p.D", payload=payload or {"x": 1})
    return wf, wf.freeze()


def test_without_hooks_the_last_task_is_the_result(app):
    wf, graph = build(app, {"tasks": ["A", "B"]})
    assert [n.task for n in graph.nodes] == ["A", "B"]
    assert graph.output == 1
    a, b = graph.nodes
    assert b.parents == (0,) and b.input == 0 and a.input is None


def test_hooks_add_result_info_and_hook_nodes_in_an_order_that_keeps_the_outcome(app):
    wf, graph = build(app, {"tasks": ["A", "B"], "hooks": {"success": "OK", "failure": "KO"}})
    labels = [n.name for n in graph.nodes]
    assert labels == ["A", "B", "hooks.success", "hooks.failure/info", "hooks.failure", "result"]
    a, b, ok, info, ko, result = range(6)
    nodes = graph.nodes
    assert graph.output == result
    assert nodes[ok].parents == (result,) and nodes[ok].input == result
    assert nodes[info].rule is TriggerRule.ONE_FAILED and nodes[info].parents == (a, b)
    assert nodes[info].input is None  # immutable: it reads the failed step itself
    assert nodes[ko].parents == (info,)
    assert nodes[result].parents == (b,)
    # When B failed, and the failure hook ran and succeeded
    states = bytearray([NodeState.SUCCEEDED, NodeState.FAILED] + [NodeState.WAITING] * 4)
    plan = plan_tick(graph, bytes(states), {})
    # Then the result and the success hook are upstream-failed, the info node ready
    assert plan.changes[result] == NodeState.UPSTREAM_FAILED
    assert plan.changes[ok] == NodeState.UPSTREAM_FAILED
    assert plan.changes[info] == NodeState.READY
    # and once the failure hook succeeded, the run is still failed, with B's error
    done = bytearray(states)
    done[result] = done[ok] = NodeState.UPSTREAM_FAILED
    done[info] = done[ko] = NodeState.SUCCEEDED
    v = verdict(graph, bytes(done))
    assert v.status is WorkflowStatus.FAILED and v.ended and v.culprit == b


def test_a_task_gets_payload_and_workflow_id_and_a_first_task_none(app):
    wf, graph = build(app, {"tasks": ["A", {"G": {"type": "group", "tasks": ["B", "C"]}}]})
    args, kwargs, _ = decode_spec(graph.nodes[0].spec)
    assert args == [None]
    assert kwargs == {"payload": {"x": 1}, "workflow_id": wf.id}
    assert decode_spec(graph.nodes[1].spec)[0] == []
    # a list ending in a group: the result node gathers it
    assert graph.nodes[-1].name == "result" and graph.nodes[-1].input == [1, 2]


def test_the_definition_queue_routes_every_node_and_the_processor(app):
    # Given director's queue: {default, customs}
    wf, graph = build(
        app,
        {
            "tasks": ["A", "B"],
            "queue": {"default": "q", "customs": {"B": "b"}},
            "hooks": {"failure": "KO"},
        },
    )
    # Then each node goes to its queue, helper nodes to the default, and so does the processor
    queues = {n.name: decode_spec(n.spec)[2].get("queue") for n in graph.nodes}
    assert queues == {
        "A": "q",
        "B": "b",
        "hooks.failure/info": "q",
        "hooks.failure": "q",
        "result": "q",
    }
    assert wf.options == {"queue": "q"}


def test_per_task_options_are_the_nodes_celery_options(app):
    wf, graph = build(
        app,
        {
            "tasks": [
                {
                    "A": {
                        "queue": "x",
                        "countdown": 1.5,
                        "priority": 3,
                        "retries": 2,
                        "kwargs": {"k": 1},
                        "label": "first",
                    }
                },
                {"B": {"trigger_rule": "all_done"}},
            ]
        },
    )
    a, b = graph.nodes
    args, kwargs, options = decode_spec(a.spec)
    assert a.label == "first" and kwargs == {"k": 1, "payload": {"x": 1}, "workflow_id": wf.id}
    assert {k: options[k] for k in ("queue", "countdown", "priority", "retry", "retry_policy")} == {
        "queue": "x",
        "countdown": 1.5,
        "priority": 3,
        "retry": True,
        "retry_policy": {"max_retries": 2},
    }
    assert b.rule is TriggerRule.ALL_DONE


def test_the_success_hook_waits_for_every_leaf_of_a_dag(app):
    # Given a side branch C that nothing after it depends on, and a success hook
    wf, graph = build(
        app,
        {
            "tasks": [
                {"A": {"label": "a"}},
                {"C": {"depends_on": "a"}},
                {"B": {"depends_on": "a"}},
            ],
            "hooks": {"success": "OK"},
        },
    )
    names = [n.name for n in graph.nodes]
    result = graph.nodes[names.index("result")]
    # Then the result (which the hook follows) waits for B and C, and returns B's value
    assert result.parents == (names.index("B"), names.index("C"))
    assert result.task == "dyrygent.definitions.result"
    assert decode_spec(result.spec)[1] == {"ends": 1}
