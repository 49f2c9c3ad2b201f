"""celery-dyrygent workflows run under dyrygent with only the import changed, on an
in-process worker: results, per-node arguments (the ledger), order, hooks, skips, options,
backup tick bounds, processing time, and adoption of a celery-dyrygent message."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from celery import chain
from celery.result import AsyncResult
from celery.signals import before_task_publish

import dyrygent
from dyrygent.compat import hooks
from dyrygent.engine.registry import processor_of
from dyrygent.errors import WorkflowError
from dyrygent.testing import wait_until
from dyrygent.workflows import Workflow, WorkflowState
from tests.compat.helpers import LEDGER, NodeFailed, both, compat_app, message, seed_canvases


@pytest.fixture(scope="module")
def app():
    with compat_app() as app:
        yield app


@pytest.fixture
def ledger():
    LEDGER.clear()
    return LEDGER


def test_a_chain_of_calls_that_ignore_their_parent_runs_as_in_celery_dyrygent(app, ledger):
    # Given celery-dyrygent's kind of chain: each call ignores its parent
    notify = app.tasks["t.notify"]
    wf = Workflow(app=app)
    wf.add_celery_canvas(chain(notify.s("a"), notify.s("b")))
    # When run with only the import changed, then it returns what celery-dyrygent's gave
    assert wf.apply_async().get(timeout=10) == "notified: b"
    # And the one-line change to native semantics passes the parent's result, as Celery does
    native = Workflow(app=app, pass_results=True)
    native.add_celery_canvas(chain(notify.s("a"), notify.s("b")))
    with pytest.raises(TypeError, match="takes 2 positional arguments but 3 were given"):
        native.apply_async().get(timeout=10)


@pytest.mark.parametrize("name", ["readme", "seed57", "seed23"])
def test_celery_dyrygent_workflows_run_with_the_same_calls_and_order(app, ledger, name):
    # Given a workflow written for celery-dyrygent, built by both libraries
    cd, wf = both(seed_canvases(app)[name](), Workflow(app=app))
    # When dyrygent runs it
    wf.apply_async().get(timeout=30)
    wait_until(lambda: len(ledger.runs) == len(cd.nodes), 10, "every node's run")
    # Then every node ran once, with the arguments celery-dyrygent would have sent it
    for node_id, node in cd.nodes.items():
        [(args, kwargs, start, _)] = ledger.runs[node_id]
        assert (args, kwargs) == (list(node.signature.args), node.signature.kwargs)
        # and after each of its dependencies ended
        for dep in node.dependencies:
            assert start >= ledger.runs[dep][0][3]


EVENTS: list[tuple[str, str, Any, dict[str, Any]]] = []


def record_state(workflow, payload):
    EVENTS.append(("on_state_change", workflow.id, payload, workflow.custom_payload))


def record_finish(workflow, payload):
    EVENTS.append(("on_finish", workflow.id, payload, workflow.custom_payload))


def record_active(workflow, payload):
    EVENTS.append(("after_active_tick", workflow.id, payload, workflow.custom_payload))


@pytest.fixture
def connected_hooks():
    EVENTS.clear()
    handlers = [
        ("on_state_change", record_state),
        ("on_finish", record_finish),
        ("after_active_tick", record_active),
    ]
    for name, handler in handlers:
        Workflow.connect(name)(handler)
    yield EVENTS
    for name, handler in handlers:
        hooks.disconnect(name, handler)


def events_of(wf_id: str) -> list[tuple[str, Any]]:
    return [(name, payload) for name, i, payload, _ in EVENTS if i == wf_id]


def test_hooks_get_the_workflow_and_celery_dyrygents_payloads(app, ledger, connected_hooks):
    # Given handlers connected as celery-dyrygent's README connects them
    rec = app.tasks["t.rec"]
    wf = Workflow(app=app, custom_payload={"job": 1})
    wf.add_celery_canvas(chain(rec.s(1), rec.s(2)))
    # When the workflow runs to its end
    wf.apply_async().get(timeout=10)
    assert wf.state == WorkflowState.RUNNING  # (what the client knows; the hooks know more)
    wait_until(lambda: ("on_finish", None) in events_of(wf.id), 10, "on_finish")
    wait_until(lambda: events_of(wf.id)[-1] == ("on_state_change", "SUCCESS"), 10, "SUCCESS")
    # Then: RUNNING first, a tick that launched each node, then on_finish and SUCCESS
    seen = events_of(wf.id)
    assert seen[0] == ("on_state_change", "RUNNING")
    assert seen.count(("after_active_tick", None)) == 2
    assert seen[-2:] == [("on_finish", None), ("on_state_change", "SUCCESS")]
    # and every handler saw the workflow's custom payload
    assert all(p == {"job": 1} for _, i, _, p in connected_hooks if i == wf.id)
    # and celery-dyrygent's hooks dict and emit() are there too
    assert record_finish in Workflow.hooks["on_finish"]
    wf.emit("on_finish", "by hand")
    assert events_of(wf.id)[-1] == ("on_finish", "by hand")


def test_a_failed_workflow_reports_failure(app, ledger, connected_hooks):
    wf = Workflow(app=app)
    wf.add_celery_canvas(chain(app.tasks["t.fail"].s(1), app.tasks["t.rec"].s(2)))
    with pytest.raises(NodeFailed, match=r"failed on purpose with \[1\]"):
        wf.apply_async().get(timeout=10)
    wait_until(lambda: events_of(wf.id)[-1:] == [("on_state_change", "FAILURE")], 10, "FAILURE")
    assert ("on_finish", None) in events_of(wf.id)


def test_skipped_tasks_never_run_and_their_children_do(app, ledger):
    rec = app.tasks["t.rec"]
    wf = Workflow(app=app)
    a = wf.add_signature(rec.s("a"))
    b = wf.add_signature(rec.s("b"), [a])
    c = wf.add_signature(rec.s("c"), [b])
    wf.skip_tasks([a.id, b.id])
    assert wf.apply_async().get(timeout=10) == ["c"]
    assert set(ledger.runs) == {c.id}
    assert AsyncResult(a.id, app=app).get(timeout=1) is None


def captured_publishes(app, run):
    """(task name, task id, properties, headers) of each message published during ``run()``."""
    seen: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = []

    def capture(sender=None, headers=None, properties=None, **_):
        seen.append((sender, (headers or {}).get("id"), dict(properties or {}), headers or {}))

    before_task_publish.connect(capture, weak=False)
    try:
        run()
    finally:
        before_task_publish.disconnect(capture)
    return seen


def test_workflow_and_task_options_reach_their_messages(app, ledger):
    # Given celery-dyrygent's README example of options
    wf = Workflow(options={"priority": 10}, app=app)
    node = wf.add_signature(app.tasks["t.rec"].s(1))
    seen = captured_publishes(app, lambda: wf.apply_async(options={"priority": 8}).get(10))
    priorities = {(name, i == node.id, props.get("priority")) for name, i, props, _ in seen}
    # Then the processor's messages carry the workflow's options, nodes the tasks' options
    assert ("dyrygent.processor", False, 10) in priorities
    assert ("t.rec", True, 8) in priorities
    assert wf.tasks_options == {"priority": 8}


def first_driver_countdown(app, wf) -> float:
    sent = time.time()
    seen = captured_publishes(app, lambda: wf.apply_async().get(10))
    [eta] = [h["eta"] for name, _, _, h in seen if name == "dyrygent.processor" and h.get("eta")][
        :1
    ]
    from datetime import datetime

    return datetime.fromisoformat(eta).timestamp() - sent


def test_the_retry_policy_bounds_this_workflows_backup_tick(app, ledger):
    # Given one workflow with celery-dyrygent's retry policy and one without
    bounded = Workflow(app=app)
    bounded.add_signature(app.tasks["t.rec"].s(1))
    bounded.set_retry_policy("random", 3, 7)
    plain = Workflow(app=app)
    plain.add_signature(app.tasks["t.rec"].s(2))
    # Then its first backup tick comes after its lower bound; the other's after the
    # processor's max_interval (0.2 s here)
    assert 2.5 < first_driver_countdown(app, bounded) < 3.5
    assert first_driver_countdown(app, plain) < 1


def test_max_processing_time_ends_a_workflow_that_runs_longer(app, ledger):
    wf = Workflow(app=app)
    wf.add_signature(app.tasks["t.rec"].s(1, sleep=0))
    wf.add_signature(app.tasks["t.notify"].s("late"))
    wf.set_max_processing_time(0)
    with pytest.raises(WorkflowError, match="passed its maximum age"):
        wf.apply_async().get(timeout=10)


def test_a_celery_dyrygent_message_is_adopted(app, ledger, caplog):
    # Given celery-dyrygent's message after two ticks: the first wave done, the second
    # published (here by the test, as celery-dyrygent's processor did) and running
    wf_id, data, cd = message(build="seed23", ticks=2, options={})
    rec = app.tasks["t.rec"]
    for node_id in cd.running:
        sig = cd.nodes[node_id].signature
        rec.apply_async(sig.args, sig.kwargs, task_id=node_id)
    # When a worker with adopt_celery_dyrygent=True takes the message
    app.send_task("workflow-processor", kwargs={"workflow_dict": data}, task_id=wf_id)
    # Then the workflow completes under dyrygent, as celery-dyrygent's would (result None)
    assert AsyncResult(wf_id, app=app).get(timeout=20) is None
    wait_until(lambda: len(ledger.runs) == len(cd.nodes) - len(cd.finished), 10, "runs")
    # and no node ran twice, and no finished node ran again
    assert all(len(runs) == 1 for runs in ledger.runs.values())
    assert not set(ledger.runs) & set(cd.finished)
    assert processor_of(app).extras(wf_id)["custom_payload"] == {"job": 42}
    # And the same message again (a second delivery) changes nothing
    with caplog.at_level(logging.INFO, logger="dyrygent.compat"):
        app.send_task("workflow-processor", kwargs={"workflow_dict": data}, task_id=wf_id)
        wait_until(lambda: "was adopted already" in caplog.text, 10, "the duplicate's log line")
    assert all(len(runs) == 1 for runs in ledger.runs.values())


def test_malformed_celery_dyrygent_messages_are_rejected_with_one_line(app, caplog):
    with caplog.at_level(logging.ERROR, logger="dyrygent.compat"):
        app.send_task("workflow-processor", kwargs={"workflow_dict": {"version": 9}})
        app.send_task("workflow-processor", args=(1,), kwargs={"other": 2})
        wait_until(lambda: len(caplog.records) >= 2, 10, "two rejections")
    lines = sorted(r.getMessage() for r in caplog.records)
    assert "invalid arguments" in lines[0] and "nothing was launched" in lines[0]
    assert "unknown workflow_dict version 9" in lines[1]


def test_dyrygents_own_workflow_still_passes_results(app, ledger):
    wf = dyrygent.Workflow(app=app)
    wf.add_celery_canvas(chain(app.tasks["t.rec"].s(1), app.tasks["t.rec"].s(2)))
    assert wf.apply_async().get(timeout=10) == [[1], 2]


def test_a_processor_elsewhere_reads_a_workflows_extras_with_its_graph(app, ledger):
    # Given a workflow with a custom payload and a retry policy, started from here
    from dyrygent.compat.processor import CompatProcessor

    wf = Workflow(app=app, custom_payload={"job": 3})
    sig = app.tasks["t.rec"].s(1)
    sig.freeze()
    node = wf.add_signature(sig)
    node.custom_payload["user_id"] = 5  # celery-dyrygent's README example
    wf.set_retry_policy("random", 2, 4)
    wf.apply_async().get(timeout=10)
    # When a processor that never saw it (another worker's) loads it
    elsewhere = CompatProcessor(app)
    elsewhere.loader.load(wf.id)
    # Then it has the workflow's extras from that load
    assert elsewhere.extras(wf.id) == {
        "custom_payload": {"job": 3},
        "node_payloads": {node.id: {"user_id": 5}},
        "backup_interval": [2, 4],
    }


def test_an_adoption_that_died_before_its_first_commit_is_adopted_again(app, ledger):
    # Given a message, and what an adoption killed between storing the workflow and
    # committing its first states leaves: the workflow stored, at generation 0, no events
    from dyrygent.compat.adopt import adopt
    from dyrygent.engine.stores import store_for

    wf_id, data, cd = message(build="readme", options={})
    store_for(app).create(wf_id, b"half", b"written", len(cd.nodes), 60)
    processor = processor_of(app)
    # When the message comes again, then it is adopted, and the workflow completes
    assert adopt(processor, wf_id, data) == "adopted"
    assert AsyncResult(wf_id, app=app).get(timeout=20) is None
    assert all(len(runs) == 1 for runs in ledger.runs.values())
    assert len(ledger.runs) == len(cd.nodes)
    # and once it ran, another copy is a duplicate
    assert adopt(processor, wf_id, data) == "duplicate"
