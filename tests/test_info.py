"""WorkflowInfo derived from a stored record and its node events (pure: no store, no Celery
worker): states, counts, progress, node times and attempts, errors, payloads."""

from __future__ import annotations

import dataclasses

import pytest

from dyrygent.core.states import NodeState, WorkflowStatus
from dyrygent.engine.stores.events import NodeEvent
from dyrygent.info import NodeInfo, Progress, describe, history_of, progress_of, state_name
from tests.core.test_tick import graph

W, R, L, U, S, F, C = (
    NodeState.WAITING,
    NodeState.READY,
    NodeState.LAUNCHED,
    NodeState.RUNNING,
    NodeState.SUCCEEDED,
    NodeState.FAILED,
    NodeState.CANCELLED,
)
CHAIN = graph({"a": (), "b": ("a",)})


def test_an_unknown_workflow_is_pending_with_nothing_counted():
    info = describe("wf", None, None, None, b"")
    assert (info.state, info.progress, info.nodes) == ("PENDING", Progress(0, 0), ())
    assert set(info.counts) == {s.name for s in NodeState} and not any(info.counts.values())


@pytest.mark.parametrize(
    "status, name",
    [
        (WorkflowStatus.RUNNING, "RUNNING"),
        (WorkflowStatus.SUCCEEDED, "SUCCESS"),
        (WorkflowStatus.FAILED, "FAILURE"),
        (WorkflowStatus.ERROR, "ERROR"),
        (WorkflowStatus.CANCELLED, "CANCELLED"),
    ],
)
def test_state_names(status, name):
    assert state_name(status) == name


def test_node_times_and_attempts_come_from_the_events():
    # Given a chain where a failed, was retried and succeeded, then b ran
    events = [
        NodeEvent(0, W, L, 10.0),
        NodeEvent(0, L, U, 11.0),
        NodeEvent(0, U, F, 12.0),
        NodeEvent(0, F, W, 20.0),  # a retry reopened it
        NodeEvent(0, W, L, 21.0),
        NodeEvent(0, L, S, 23.0),
        NodeEvent(1, W, L, 24.0),
    ]
    # When described
    info = describe(
        "wf",
        WorkflowStatus.RUNNING,
        1.0,
        None,
        bytes([S, L]),
        CHAIN,
        events,
        custom_payload={"k": 1},
        node_payloads={"b": {"step": 2}},
    )
    # Then a started at its first launch, ended at its last settle, was launched twice
    a, b = info.nodes
    assert a == NodeInfo("a", "t", "t", "SUCCEEDED", 10.0, 23.0, 2)
    # and b is in flight: started, not ended, with its payload
    assert (b.state, b.started_at, b.ended_at, b.attempts) == ("LAUNCHED", 24.0, None, 1)
    assert b.custom_payload == {"step": 2} and info.custom_payload == {"k": 1}
    assert (a.parents, b.parents) == ((), ("a",))  # the graph's edges, for pictures
    assert info.progress == Progress(1, 2) and info.counts["LAUNCHED"] == 1
    # and everything is frozen
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.state = "SUCCESS"  # type: ignore[misc]


def test_a_failed_node_carries_its_error_and_history_names_nodes_and_states():
    info = describe(
        "wf",
        WorkflowStatus.FAILED,
        1.0,
        5.0,
        bytes([F, C]),
        CHAIN,
        [NodeEvent(0, W, L, 2.0), NodeEvent(0, L, F, 3.0), NodeEvent(1, W, C, 3.0)],
        {0: {"type": "ValueError", "message": "bad"}},
    )
    assert info.nodes[0].error == {"type": "ValueError", "message": "bad"}
    assert info.nodes[1].error is None and info.nodes[1].started_at is None
    assert info.nodes[1].ended_at == 3.0 and info.progress == Progress(2, 2)
    events = history_of(CHAIN, [NodeEvent(1, W, C, 3.0)])
    assert [(e.node, e.old, e.new, e.at) for e in events] == [("b", "WAITING", "CANCELLED", 3.0)]


def test_progress_counts_settled_nodes():
    assert progress_of(bytes([W, R, L, U, S, F, C])) == Progress(3, 7)
