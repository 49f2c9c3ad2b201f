"""celery-dyrygent's members on dyrygent.workflows.Workflow, checked against celery-dyrygent
0.8.0 itself where it can run without a broker (building, simulating, serialising)."""

from __future__ import annotations

import json
import warnings

import pytest
from celery import chain, chord, group
from celery_dyrygent.workflows import Workflow as CDWorkflow
from celery_dyrygent.workflows import WorkflowException as CDWorkflowException

import dyrygent
from dyrygent.errors import BuildError, DyrygentError
from dyrygent.workflows import Workflow, WorkflowException, WorkflowNode, WorkflowState
from tests.compat.helpers import both, dependency_map, make_app, seed_canvases

APP = make_app("compat-members")
REC = APP.tasks["t.rec"]


def cd_waves(wf) -> list[set[str]]:
    waves = []
    while wf.simulate_tick():
        waves.append(set(wf.running))
    return waves


@pytest.mark.parametrize("name", ["readme", "seed57", "seed23"])
def test_canvases_give_celery_dyrygents_nodes_and_dependencies(name):
    # Given the same canvas added to a celery-dyrygent Workflow and to dyrygent.workflows'
    cd, dy = both(seed_canvases(APP)[name](), Workflow(app=APP))
    # Then: the same node ids, each with the same dependencies
    assert dependency_map(dy.nodes) == dependency_map(cd.nodes)
    # and each node's signature makes the same call
    for node_id, node in cd.nodes.items():
        mine = dy.nodes[node_id].signature
        assert (mine.task, list(mine.args), mine.kwargs) == (
            node.signature.task,
            list(node.signature.args),
            node.signature.kwargs,
        )
        assert mine.id == node_id


@pytest.mark.parametrize("name", ["readme", "seed57", "seed23"])
def test_simulate_tick_gives_celery_dyrygents_waves(name):
    cd, dy = both(seed_canvases(APP)[name](), Workflow(app=APP))
    assert cd_waves(dy) == cd_waves(cd)
    assert set(dy.finished) == set(dy.nodes)


def test_iterate_dependencies_gives_celery_dyrygents_pairs():
    cd, dy = both(seed_canvases(APP)["seed23"](), Workflow(app=APP))

    def pairs(wf):
        return [(n.id, d.id if d else None) for n, d in wf.iterate_dependencies()]

    assert pairs(dy) == pairs(cd)


def test_nodes_is_a_dict_of_nodes_with_signature_dependencies_and_payload():
    wf = Workflow(app=APP)
    a = wf.add_signature(REC.s(1))
    b = wf.add_signature(REC.s(2), [a], custom_payload={"user_id": 7})
    b.custom_payload["more"] = True  # celery-dyrygent's README mutates it
    assert list(wf.nodes) == [a.id, b.id]
    assert isinstance(wf.nodes[b.id], WorkflowNode)
    assert wf.nodes[b.id].dependencies == {a.id: None}
    assert wf.nodes[b.id].custom_payload == {"user_id": 7, "more": True}
    assert wf.nodes[b.id].to_dict()["signature"]["args"] == [2]
    # and dyrygent's own node fields stay
    assert (b.task, b.label) == ("t.rec", "t.rec")
    assert isinstance(b, dyrygent.WorkflowNode)


def test_add_celery_kinds_add_their_kind_only():
    wf = Workflow(app=APP)
    [first] = wf.add_celery_signature(REC.s(0))
    ends = wf.add_celery_chain(chain(REC.s(1), REC.s(2)), [first])
    members = wf.add_celery_group(group(REC.s(3), REC.s(4)), ends)
    [body] = wf.add_celery_chord(chord([REC.s(5)], REC.s(6)), members)
    assert len(members) == 2 and wf.nodes[body.id].dependencies
    assert wf.add_celery_group(group([]), [body]) == [body]  # an empty group: its deps
    with pytest.raises(BuildError, match=r"add_celery_chain\(\) was given group"):
        wf.add_celery_chain(group(REC.s(7)))


def test_skip_tasks_keeps_celery_dyrygents_parent_check():
    # Given a -> b, in both libraries
    wf, cd = Workflow(app=APP), CDWorkflow()
    for w in (wf, cd):
        first = REC.s(1)
        first.freeze()  # celery-dyrygent's add_signature wants frozen signatures
        second = REC.s(2)
        second.freeze()
        w.add_signature(second, [w.add_signature(first)])
    a_id, b_id = list(wf.nodes)
    # When b is skipped without a, then both refuse
    with pytest.raises(CDWorkflowException, match="not all parents finished"):
        cd.skip_tasks([list(cd.nodes)[1]])
    with pytest.raises(WorkflowException, match="not all parents finished.*skip them too"):
        wf.skip_tasks([b_id])
    # and skipping both marks both finished
    wf.skip_tasks([a_id, b_id])
    assert wf.finished == {a_id: True, b_id: True}
    with pytest.raises(BuildError, match="has no node 'nope'"):
        wf.skip_tasks(["nope"])


def test_to_dict_from_dict_round_trip_through_json():
    # Given a built workflow with payloads, a skip, a retry policy and a processing limit
    wf = Workflow(options={"priority": 3}, app=APP, custom_payload={"job": 1})
    ends = wf.add_celery_canvas(seed_canvases(APP)["readme"]())
    last = wf.add_signature(REC.s("end"), ends, custom_payload={"k": "v"}, label="finish")
    wf.skip_tasks([next(iter(wf.nodes))])
    wf.set_retry_policy("random", 2, 5)
    wf.set_max_processing_time(600)
    # When it goes through JSON and back
    data = json.loads(json.dumps(wf.to_dict()))
    again = Workflow.from_dict(data, app=APP)
    # Then it is the same workflow
    assert again.to_dict() == wf.to_dict()
    assert again.id == wf.id and list(again.nodes) == list(wf.nodes)
    assert again.freeze().nodes == wf.freeze().nodes
    assert again.nodes[last.id].custom_payload == {"k": "v"}
    assert (again.retry_policy, again.max_age, again.custom_payload) == (
        ["random", 2, 5],
        600,
        {"job": 1},
    )
    with pytest.raises(BuildError, match="not a dict written by"):
        Workflow.from_dict({"nodes": {}})


def test_retry_policy_and_processing_time():
    wf = Workflow(app=APP)
    wf.set_retry_policy("random", 1, 4)
    assert wf.retry_policy == ["random", 1, 4]
    wf.set_max_processing_time(30)
    assert wf.max_age == wf.max_processing_time == 30
    with pytest.raises(WorkflowException, match='Invalid retry policy, got "linear"'):
        wf.set_retry_policy("linear", 1, 2)
    with pytest.raises(WorkflowException, match=r"0 < low <= high"):
        wf.set_retry_policy("random", 5, 1)


def test_workflow_exception_is_dyrygents_error_root():
    assert WorkflowException is DyrygentError
    with pytest.raises(WorkflowException, match="invalid signal"):
        Workflow.connect("on_start")


def test_pass_results_defaults_differ_and_options_are_kept():
    assert Workflow(app=APP).pass_results is False
    assert dyrygent.Workflow(app=APP).pass_results is True
    wf = Workflow(options={"priority": 10}, app=APP)
    assert wf.workflow_options == wf.options == {"priority": 10}
    assert wf.state == WorkflowState.INITIAL


def test_pass_results_false_clears_every_input_and_keeps_the_output():
    # Given the same canvas under both settings
    canvas = seed_canvases(APP)["readme"]()
    native = dyrygent.Workflow(app=APP)
    native.add_celery_canvas(canvas)
    compat = dyrygent.Workflow(app=APP, pass_results=False)
    compat.add_celery_canvas(canvas)
    # Then no node receives anything, and the workflow's result is the same expression
    assert any(n.input is not None for n in native.freeze().nodes)
    assert all(n.input is None for n in compat.freeze().nodes)
    assert compat.freeze().output == native.freeze().output


def test_the_adopter_refuses_to_run_behind_celery_dyrygents_own_processor():
    # Given an app where celery-dyrygent's processor took the name first (as its shared
    # task does on every app), then dyrygent's adopter
    from celery import Celery
    from celery_dyrygent.tasks import register_workflow_processor as cd_register

    from dyrygent.compat.adopt import check_adopter, register_adopter
    from dyrygent.engine.registry import processor_of
    from dyrygent.errors import ConfigurationError

    app = Celery("both", set_as_current=False)
    cd_register(app, shared=False)
    register_adopter(app, processor_of(APP))
    adopter = APP.tasks["workflow-processor"].run.__func__
    # Then the worker-start check refuses, naming the fix; the compat app passes it
    with warnings.catch_warnings():  # (Celery also warns that the name was taken)
        warnings.simplefilter("ignore")
        with pytest.raises(ConfigurationError, match="drop celery_dyrygent.tasks.register_wo"):
            check_adopter(app, adopter)
    check_adopter(APP, adopter)
