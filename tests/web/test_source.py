"""The adapter's pure parts: names read from encoded graphs, node times from the event log,
the run's state from its status and node states (no broker)."""

from __future__ import annotations

from celery import Celery

from dyrygent import Workflow
from dyrygent.core.codec import encode_graph
from dyrygent.core.states import NodeState as S
from dyrygent.core.states import WorkflowStatus
from dyrygent.engine.stores import NodeEvent
from dyrygent.web.model import (
    as_events,
    counts_of,
    first_name,
    node_times,
    run_state,
    unsafe_results,
)

app = Celery("web-source", set_as_current=False)


@app.task(name="t.a")
def a(x):
    return x


@app.task(name="t.b")
def b(x):
    return x


def test_first_name_is_the_first_nodes_label_or_task():
    # Given a labelled first node, then an unlabelled one
    wf = Workflow(app=app)
    first = wf.add_signature(b.s(1), label="load")
    wf.add_signature(a.s(1), first, label="other")
    plain = Workflow(app=app)
    plain.add_signature(b.s(1))
    plain.add_signature(a.s(1), label="second")
    # Then the name is the first node's label, else its task; garbage gives None
    assert first_name(encode_graph(wf.freeze())) == "load"
    assert first_name(encode_graph(plain.freeze())) == "t.b"
    assert first_name(b"\x93garbage") is None and first_name(None) is None


def test_node_times_follow_launches_and_ends():
    # Given node 0 launched at 1, running at 2, succeeded at 3; node 1 failed, retried, ok
    events = [
        NodeEvent(0, S.WAITING, S.LAUNCHED, 1.0),
        NodeEvent(0, S.LAUNCHED, S.RUNNING, 2.0),
        NodeEvent(0, S.RUNNING, S.SUCCEEDED, 3.0),
        NodeEvent(1, S.READY, S.LAUNCHED, 3.0),
        NodeEvent(1, S.LAUNCHED, S.FAILED, 4.0),
        NodeEvent(1, S.FAILED, S.WAITING, 5.0),
        NodeEvent(1, S.READY, S.LAUNCHED, 6.0),
        NodeEvent(1, S.LAUNCHED, S.SUCCEEDED, 7.0),
    ]
    # Then each node's last attempt's times and its attempt count; node 2 never ran
    assert node_times(3, as_events(events)) == [[1.0, 3.0, 1], [6.0, 7.0, 2], [None, None, 0]]


def test_run_state_names():
    running = WorkflowStatus.RUNNING
    assert run_state(running, bytes([S.WAITING, S.READY])) == "PENDING"
    assert run_state(running, bytes([S.SUCCEEDED, S.WAITING])) == "RUNNING"
    assert run_state(WorkflowStatus.SUCCEEDED, b"\x02") == "SUCCESS"
    assert run_state(WorkflowStatus.FAILED, b"\x03") == "FAILURE"
    assert run_state(WorkflowStatus.CANCELLED, b"\x07") == "CANCELLED"
    assert run_state(None, b"") == "UNKNOWN"
    assert counts_of(bytes([S.SUCCEEDED, S.SUCCEEDED, S.FAILED])) == {"SUCCEEDED": 2, "FAILED": 1}


def test_results_are_not_read_when_they_may_be_pickled():
    # Given the default JSON config, then one accepting pickled results
    conf = Celery("safe", set_as_current=False).conf
    assert not unsafe_results(conf)
    risky = Celery("risky", set_as_current=False).conf
    risky.result_accept_content = ["json", "pickle"]
    # Then only the second makes the dashboard hide results
    assert unsafe_results(risky)
