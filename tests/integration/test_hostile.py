"""Hostile or corrupted input reaching the processor: rejected, nothing launched, and the
worker still runs the next good workflow (RELIABILITY.md item 9)."""

from __future__ import annotations

import pytest
from celery.result import AsyncResult

from dyrygent import Workflow, WorkflowError
from dyrygent.engine.processor import PROCESSOR_NAME
from dyrygent.engine.spec import encode_header
from dyrygent.engine.store import store_for


def good_workflow_still_runs(app, t):
    wf = Workflow(app=app)
    wf.add_celery_canvas(t.add.si(20, 22))
    assert wf.apply_async().get(timeout=20) == 42


@pytest.mark.parametrize("args, kwargs", [
    ((42, 0), {}),                          # workflow id of the wrong type
    (("x" * 500, 0), {}),                   # oversized id
    (("wf", "0"), {}),                      # generation of the wrong type
    (("wf", -3), {}),
    (("wf", 0), {"idle": 10**9}),
    (("wf", 0), {"serializer": "pickle"}),  # options smuggled in as arguments
])
def test_malformed_processor_messages_are_rejected(app, t, ledger, args, kwargs):
    app.send_task(PROCESSOR_NAME, args, kwargs)
    good_workflow_still_runs(app, t)
    assert len(ledger.entries()) == 1  # only the good workflow's node ran


@pytest.mark.parametrize("graph, reason", [
    (b"\x00\x01garbage", "not msgpack"),
    (b"\x92\xa8dyrygent\x07", "unknown format version 7"),
])
def test_a_corrupted_stored_graph_ends_the_workflow_with_the_reason(app, t, ledger, graph,
                                                                   reason):
    # Given a workflow whose stored graph was corrupted
    wf_id = f"corrupt-{reason.split()[0]}-{len(graph)}"
    store_for(app).create(wf_id, graph, encode_header({"version": 1}), 1, 3600)
    # When its processor runs
    app.send_task(PROCESSOR_NAME, (wf_id, 0))
    # Then the workflow ends in ERROR saying why, nothing ran, and the worker goes on
    with pytest.raises(WorkflowError, match=reason):
        AsyncResult(wf_id, app=app).get(timeout=20)
    assert ledger.entries() == []
    good_workflow_still_runs(app, t)


def test_a_replayed_old_generation_launches_nothing(app, t, ledger):
    wf = Workflow(app=app)
    wf.add_celery_canvas(t.add.si(1, 1))
    result = wf.apply_async()
    assert result.get(timeout=20) == 2
    # replaying generation 0 after the workflow finished
    app.send_task(PROCESSOR_NAME, (wf.id, 0))
    good_workflow_still_runs(app, t)
    assert ledger.runs()[wf.nodes[0].id] == 1
