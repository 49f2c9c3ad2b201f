"""Converting celery-dyrygent 0.8.0's processor message (workflow_dict) into a dyrygent
workflow, with no broker: the message is the one celery-dyrygent itself builds."""

from __future__ import annotations

import time

import pytest

from dyrygent.compat.convert import convert_workflow_dict
from dyrygent.compat.starting import initial_states
from dyrygent.core.states import NodeState
from dyrygent.errors import PayloadError
from tests.compat.helpers import make_app, message

APP = make_app("compat-convert")


def test_a_celery_dyrygent_message_converts_to_the_same_nodes():
    # Given celery-dyrygent's message after three ticks
    wf, data, cd = message(ticks=3)
    # When converted
    adopted = convert_workflow_dict(wf, data, APP, time.time())
    graph = adopted.graph
    # Then the nodes keep their ids and dependencies, and nobody receives a parent's result
    assert set(graph.index) == set(cd.nodes)
    for node in graph.nodes:
        assert {graph.nodes[p].id for p in node.parents} == set(cd.nodes[node.id].dependencies)
        assert node.input is None
    assert graph.output is None  # celery-dyrygent's workflow result is None
    # finished nodes stay finished, running ones are observed
    given = {graph.nodes[i].id: s for i, s in adopted.given.items()}
    assert given == {
        **{i: NodeState.LAUNCHED for i in cd.running},
        **{i: NodeState.SUCCEEDED for i in cd.finished},
    }
    # and its options, payloads, retry bounds and processing limit are kept
    assert adopted.header.node_options == {"priority": 4}
    assert adopted.header.processor_options == {"queue": "wf"}
    first = next(iter(cd.nodes))
    assert adopted.extras == {
        "custom_payload": {"job": 42},
        "node_payloads": {first: {"user_id": 7}},
        "backup_interval": [2, 6],
    }
    assert 7 * 24 * 3600 - 60 < adopted.max_age <= 7 * 24 * 3600


def test_initial_states_settle_what_the_finished_nodes_decide():
    # Given a message whose first node failed and whose next wave is running
    wf, data, cd = message(build="seed57", ticks=1, fail_first=True)
    adopted = convert_workflow_dict(wf, data, APP, time.time())
    states, plan = initial_states(adopted.graph, adopted.given)
    # Then the failed node's descendants never run, and the outcome is already decided
    assert NodeState.READY not in states
    assert states.count(NodeState.UPSTREAM_FAILED) == len(adopted.graph) - 1
    assert plan.verdict.status is not None and plan.done


def test_a_finished_wave_makes_the_next_ready():
    wf, data, cd = message(ticks=1)
    cd.simulate_tick()  # the first wave done, the second "scheduled" in celery-dyrygent
    data["finished"] = {i: True for i in data["running"]}
    data["running"] = {}
    adopted = convert_workflow_dict(wf, data, APP, time.time())
    states, _ = initial_states(adopted.graph, adopted.given)
    ready = {adopted.graph.nodes[i].id for i, s in enumerate(states) if s == NodeState.READY}
    assert ready == set(cd.running)


def broken(path: str, value):
    wf, data, _ = message()
    node = next(iter(data["nodes"]))
    target = data
    keys = path.replace("NODE", node).split(".")
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value
    return wf, data


@pytest.mark.parametrize(
    "path, value, error",
    [
        ("version", 2, "unknown workflow_dict version 2"),
        ("nodes", [], "nodes is not a dict"),
        ("nodes.NODE.dependencies", {"ghost": None}, "depends on 'ghost'"),
        ("nodes.NODE.signature", {"args": []}, "is not a task signature dict"),
        ("nodes.NODE.signature.subtask_type", "group", "a group as one node"),
        ("finished", {"ghost": True}, "finished names 'ghost'"),
        ("retry_policy", ["linear", 1, 2], "is not \\['random', low, high\\]"),
        ("processing_limit_ts", "soon", "processing_limit_ts is not a number"),
    ],
)
def test_malformed_messages_are_refused_naming_the_fault(path, value, error):
    wf, data = broken(path, value)
    with pytest.raises(PayloadError, match=f"celery-dyrygent workflow {wf}: .*{error}"):
        convert_workflow_dict(wf, data, APP, time.time())


def test_a_message_that_is_not_a_dict_is_refused():
    with pytest.raises(PayloadError, match="workflow_dict is not a dict"):
        convert_workflow_dict("w", ["x"], APP, time.time())
