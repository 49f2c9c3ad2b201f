"""Building and starting workflows without a worker: labels, start rules, what is refused
before anything is stored or published (memory broker, in-memory backend)."""

from __future__ import annotations

import pytest
from celery import Celery, chain, group

from dyrygent import (
    BuildError,
    InvalidNodeError,
    TriggerRule,
    Workflow,
    register_workflow_processor,
)
from dyrygent.engine.registry import processor_of
from dyrygent.engine.stores import store_for


def make_app(**settings):
    app = Celery("build", broker="memory://", backend="cache+memory://", set_as_current=False)
    register_workflow_processor(app, **settings)

    @app.task(name="build.add", shared=False)
    def add(x, y):
        return x + y

    return app, add


def test_apply_async_twice_is_refused_and_the_first_run_is_untouched():
    # Given a started workflow
    app, add = make_app()
    wf = Workflow(app=app)
    wf.add_celery_canvas(chain(add.si(1, 1), add.s(2)))
    wf.apply_async()
    states = store_for(app).status(wf.id).states
    # When it is started again, then it is refused, and its state is as it was
    with pytest.raises(BuildError, match=f"workflow {wf.id} was already started.*new Workflow"):
        wf.apply_async()
    assert store_for(app).status(wf.id).states == states


def test_an_empty_group_is_no_empty_workflow():
    # Given a workflow of one empty group (natively: [])
    app, _ = make_app()
    wf = Workflow(app=app)
    wf.add_celery_canvas(group([]))
    # When it starts, then its result is stored by the client's first tick
    assert wf.apply_async().get(timeout=5) == []


def test_an_empty_workflow_is_refused():
    app, _ = make_app()
    with pytest.raises(BuildError, match="the workflow has no nodes: add a canvas"):
        Workflow(app=app).apply_async()


def test_known_tasks_star_accepts_any_task_name():
    # Given a processor told to accept every task name, and a node naming a task it lacks
    app, _ = make_app(known_tasks="*")
    wf = Workflow(app=app)
    wf.add_celery_canvas(app.signature("elsewhere.task", args=(1,)))
    # When it starts, then it is stored and its node launched (the client's first tick)
    wf.apply_async()
    assert store_for(app).status(wf.id).states == bytes([1])  # LAUNCHED
    assert processor_of(app).loader.load(wf.id).graph.nodes[0].task == "elsewhere.task"


def test_labels_default_to_the_task_name_and_a_canvas_label_prefixes_them():
    app, add = make_app()
    wf = Workflow(app=app)
    first = wf.add_signature(add.si(1, 1), label="seed")
    ends = wf.add_celery_canvas(group(add.s(1), add.s(2)), first, label="fan")
    last = wf.add_signature(add.s(0).set(immutable=True), ends)
    assert [n.label for n in wf.nodes] == ["seed", "fan/build.add", "fan/build.add", "build.add"]
    assert [n.label for n in wf.freeze().nodes] == ["seed", "fan/build.add", "fan/build.add", None]
    assert last.label == "build.add"


def test_a_start_rule_applies_to_the_first_nodes_of_a_canvas():
    app, add = make_app()
    wf = Workflow(app=app)
    root = wf.add_signature(add.si(1, 1))
    wf.add_celery_canvas(chain(add.si(2, 2), add.s(3)), root, trigger_rule="all_done")
    rules = [n.rule for n in wf.freeze().nodes]
    assert rules == [TriggerRule.ALL_SUCCESS, TriggerRule.ALL_DONE, TriggerRule.ALL_SUCCESS]


def test_an_unknown_start_rule_is_refused_naming_the_node_and_the_rules():
    app, add = make_app()
    wf = Workflow(app=app)
    root = wf.add_signature(add.si(1, 1))
    sig = add.si(2, 2)
    with pytest.raises(
        InvalidNodeError, match=r"unknown trigger rule 'sometimes': use one of all_success"
    ):
        wf.add_signature(sig, root, trigger_rule="sometimes")
