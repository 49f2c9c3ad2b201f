"""Workflow.to_dot()/to_mermaid() before a start, and WorkflowResult's with the stored states
(memory broker, in-memory backend, no worker: the client's first tick launches the roots)."""

from __future__ import annotations

import pytest
from celery import Celery, chord

from dyrygent import PayloadError, Workflow, register_workflow_processor
from dyrygent.workflow import WorkflowResult


@pytest.fixture
def app():
    app = Celery("pictures", broker="memory://", backend="cache+memory://", set_as_current=False)
    register_workflow_processor(app)

    @app.task(name="p.add", shared=False)
    def add(x, y):
        return x + y

    @app.task(name="p.tsum", shared=False)
    def tsum(xs):
        return sum(xs)

    return app


def test_a_workflow_is_drawn_before_it_starts_and_live_after(app):
    # Given a labelled chord of 60 adds
    add, tsum = app.tasks["p.add"], app.tasks["p.tsum"]
    wf = Workflow(app=app)
    wf.add_celery_canvas(chord([add.si(i, i) for i in range(60)], tsum.s()), label="sums")
    body = wf.nodes[-1]
    # When drawn before it starts
    dot = wf.to_dot()
    # Then the header is one white box (over the default collapse size), the body another
    assert '[label="sums/p.add ×60", tooltip="60 nodes: ' in dot
    assert f'"{body.id}" [label="sums/p.tsum", tooltip="{body.id}", fillcolor="#ffffff"];' in dot
    assert wf.to_mermaid(collapse=100).count("-->") == 60
    # When it is started (the client's first tick launches the header; no worker runs it)
    result = wf.apply_async()
    # Then the live picture shows the stored states
    assert "sums/p.add ×60: 60 LAUNCHED" in result.to_dot()
    assert "sums/p.tsum<br/>WAITING" in WorkflowResult(wf.id, app=app).to_mermaid()


def test_an_unknown_workflow_cannot_be_drawn(app):
    with pytest.raises(PayloadError, match="workflow nope: its graph is not in the result backend"):
        WorkflowResult("nope", app=app).to_dot()
