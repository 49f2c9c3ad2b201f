"""A rolling upgrade: a workflow stored by dyrygent 0.1 (graph format 1, header version 1)
completes on workers of this release."""

from __future__ import annotations

from celery import chain, chord
from celery.result import AsyncResult
from kombu.utils.json import dumps

from dyrygent import Workflow
from dyrygent.engine.processor import PROCESSOR_NAME
from dyrygent.engine.stores import store_for
from dyrygent.engine.trust import seal
from dyrygent.engine.wake import join_counters
from tests.legacy.format1 import encode_graph_v1


def test_a_workflow_stored_in_format_1_completes_with_the_new_processor(app, t, ledger):
    # Given a workflow as dyrygent 0.1 stored it: its graph encoder, its header, its driver
    wf = Workflow(app=app)
    wf.add_celery_canvas(chain(t.add.si(1, 1), chord([t.add.s(i) for i in range(3)], t.tsum.s())))
    graph = wf.freeze()
    data = encode_graph_v1(graph)
    header = dumps({"version": 1, "node_options": {}, "processor_options": {}}).encode()
    store_for(app).create(
        wf.id, data, seal(app, data, header), len(graph), 3600, joins=join_counters(graph)
    )
    app.send_task(PROCESSOR_NAME, (wf.id, 0))
    # When the new processor drives it, then it completes with native's result
    assert AsyncResult(wf.id, app=app).get(timeout=20) == 2 * 3 + 0 + 1 + 2
    # and every node ran once
    assert sorted(ledger.runs().values()) == [1] * len(graph)
