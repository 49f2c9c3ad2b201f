"""Finding nodes orphaned by a lost worker, in process: the in-memory store and backend, the
memory broker (no worker answers its remote control, as after a SIGKILL)."""

from __future__ import annotations

import time

import pytest
from billiard.exceptions import WorkerLostError
from celery import Celery, chain
from celery import states as celery_states
from celery.utils import uuid

from dyrygent import InvalidNodeError, NodeLostError, NodeTimeoutError, register_workflow_processor
from dyrygent import Workflow as DyrygentWorkflow
from dyrygent.core.builder import GraphBuilder
from dyrygent.core.states import NodeState, WorkflowStatus
from dyrygent.core.tick import Outcome
from dyrygent.engine.orphans import Orphans
from dyrygent.engine.results import observe
from dyrygent.engine.spec import encode_spec, spec_extras, with_extras
from dyrygent.engine.stores.kv import KVStore

L, R, S = NodeState.LAUNCHED, NodeState.RUNNING, NodeState.SUCCEEDED


@pytest.fixture
def app():
    return Celery("orphans", broker="memory://", backend="cache+memory://", set_as_current=False)


@pytest.fixture
def store(app):
    return KVStore(app.backend, prefix="orphans-test-")


class Workflow:
    """A stored workflow of independent nodes in the given states; its ids are fresh (the
    in-memory backend is shared by the whole process)."""

    def __init__(self, app, store, states, specs=None):
        self.app, self.store, self.wf = app, store, uuid()
        b = GraphBuilder()
        for i in range(len(states)):
            b.add(self.node(i), "t.add", (specs or {}).get(i, b""))
        self.graph = b.freeze()
        self.states = bytes(states)
        store.create(self.wf, b"g", b"h", len(states), 3600)

    def node(self, i):
        return f"{self.wf}-n{i}"

    def record(self, i, worker):
        self.store.record_start(self.wf, self.node(i), worker)

    def records(self):
        return {n.rsplit("-", 1)[1] for n in self.store.starts(self.wf, 0.0)[1]}

    def review(self, orphans):
        seen = observe(self.app.backend, self.graph, self.states, range(len(self.states)))
        return orphans.review(self.app, self.store, self.wf, self.graph, self.states, seen)


def orphans(grace=0.0, max_relaunches=3):
    return Orphans(grace=grace, max_relaunches=max_relaunches, ping_timeout=0.1)


def test_a_node_whose_worker_is_gone_goes_back_to_ready_with_its_result_forgotten(app, store):
    # Given two launched nodes started by a worker that no longer answers, one of which
    # stored STARTED (task_track_started), and a third still waiting in a queue (no record)
    w = Workflow(app, store, [L, R, L])
    w.record(0, "gone@host|123|")
    w.record(1, "gone@host|123|")
    app.backend.store_result(w.node(1), None, celery_states.STARTED)
    # When a tick reviews them past the grace period
    seen, relaunch = w.review(orphans())
    # Then both started ones are relaunched, their results forgotten; the queued one is not
    assert relaunch == {0: NodeState.READY, 1: NodeState.READY}
    assert 0 not in seen.outcomes and 1 not in seen.outcomes and 2 in seen.outcomes
    assert app.backend.get_task_meta(w.node(1))["status"] == celery_states.PENDING
    # And their records are gone (a queued relaunch is not suspected again)
    assert w.records() == set()


def test_nothing_is_asked_before_the_grace_period(app, store):
    # Given a node started just now by a worker that does not answer
    w = Workflow(app, store, [L])
    w.record(0, "gone@host|123|")
    # Then a tick within the grace period leaves it alone
    assert w.review(orphans(grace=60.0))[1] == {}


def test_a_node_that_ended_meanwhile_is_not_relaunched_and_settled_records_are_dropped(app, store):
    # Given a node whose result is there (the tick will see it) and one already SUCCEEDED
    w = Workflow(app, store, [L, S])
    w.record(0, "gone@host|1|")
    w.record(1, "gone@host|1|")
    app.backend.store_result(w.node(0), 3, celery_states.SUCCESS)
    # When a tick reviews them
    seen, relaunch = w.review(orphans())
    # Then nothing is relaunched, the success stands, and the settled node's record is dropped
    assert relaunch == {} and seen.outcomes[0] is Outcome.SUCCEEDED
    assert w.records() == {"n0"}


def test_silence_of_a_solo_worker_or_one_without_remote_control_proves_nothing(app, store):
    # Given nodes run by a solo pool (busy: it cannot answer) and by a worker that has
    # remote control disabled
    w = Workflow(app, store, [L, L])
    w.record(0, "solo@host|1|s")
    w.record(1, "quiet@host|2|n")
    # Then neither is relaunched
    assert w.review(orphans())[1] == {}


def test_a_pool_process_lost_by_celery_is_relaunched_without_asking(app, store):
    # Given a node Celery failed with WorkerLostError (its pool child was SIGKILLed)
    w = Workflow(app, store, [L])
    app.backend.mark_as_failure(w.node(0), WorkerLostError("Worker exited prematurely: signal 9"))
    # When a tick reviews it (even within the grace period)
    seen, relaunch = w.review(orphans(grace=60.0))
    # Then it is relaunched and its failure forgotten
    assert relaunch == {0: NodeState.READY} and 0 not in seen.outcomes
    assert app.backend.get_task_meta(w.node(0))["status"] == celery_states.PENDING


def test_relaunches_are_bounded_then_the_node_fails_naming_itself_and_the_cause(app, store):
    # Given a node whose pool process keeps dying
    w = Workflow(app, store, [L])
    check = orphans(max_relaunches=2)
    for _ in range(2):
        app.backend.mark_as_failure(w.node(0), WorkerLostError("signal 9"))
        assert w.review(check)[1] == {0: NodeState.READY}
    # When it dies a third time
    app.backend.mark_as_failure(w.node(0), WorkerLostError("signal 9"))
    seen, relaunch = w.review(check)
    # Then it fails with NodeLostError, stored in the backend as its own failure
    assert relaunch == {} and seen.outcomes[0] is Outcome.FAILED
    stored = app.backend.get_task_meta(w.node(0))
    assert stored["status"] == celery_states.FAILURE
    with pytest.raises(NodeLostError, match=r"node .*-n0 \(t.add\) .* lost 3 times.*=2"):
        raise stored["result"]


def test_between_checks_of_the_records_a_lost_pool_process_is_still_seen_at_once(app, store):
    # Given a check of the records just made (the next one is due in half a minute) and a
    # node started by a worker that no longer answers
    w = Workflow(app, store, [L, L])
    check = orphans(grace=60.0)
    w.review(check)
    w.record(1, "gone@host|1|")
    # When a pool process dies right after
    app.backend.mark_as_failure(w.node(0), WorkerLostError("signal 9"))
    # Then Celery's WorkerLostError is handled at the next tick; the records wait their turn
    assert w.review(check)[1] == {0: NodeState.READY}


def test_a_node_past_its_deadline_fails_with_node_timeout_error(app, store):
    # Given a running node with a 0.2 s deadline, and one without a deadline, both started
    # by a worker whose silence proves nothing (solo), so only the deadline applies
    spec = with_extras(encode_spec("x", "t.add", [1], {}, {}), timeout=0.2)
    w = Workflow(app, store, [L, L], specs={0: spec})
    for i in (0, 1):
        w.record(i, "w@host|1|s")
    # When a tick reviews them after the deadline
    time.sleep(0.3)
    seen, relaunch = w.review(orphans(grace=60.0))
    # Then the first fails with NodeTimeoutError, stored as its result; the other is left
    assert relaunch == {} and seen.outcomes[0] is Outcome.FAILED
    assert seen.outcomes[1] is not Outcome.FAILED
    stored = app.backend.get_task_meta(w.node(0))
    with pytest.raises(NodeTimeoutError, match=r"node .*-n0 \(t.add\) .* still running 0.2 s"):
        raise stored["result"]


def test_a_timeout_applies_to_every_node_of_its_canvas_and_must_be_above_zero(app):
    # Given a workflow with a chain under a 30 s timeout and a signature without one
    register_workflow_processor(app)

    @app.task(name="orphans.add", shared=False)
    def add(x, y):
        return x + y

    wf = DyrygentWorkflow(app=app)
    wf.add_celery_canvas(chain(add.si(1, 1), add.s(2)), timeout=30)
    wf.add_signature(add.si(3, 3))
    # Then each chain node carries the deadline, the other none
    graph = wf.freeze()
    assert [spec_extras(n.spec).get("timeout") for n in graph.nodes] == [30.0, 30.0, None]
    # And a timeout that is not above 0 is refused, naming the node
    with pytest.raises(InvalidNodeError, match=r"node '.*' \(orphans.add\): timeout=0 is not"):
        wf.add_signature(add.si(4, 4), timeout=0)


def test_a_node_that_acks_late_is_left_to_the_broker(app, store):
    # Given a node of a task with acks_late started by a worker that no longer answers
    w = Workflow(app, store, [L])
    w.record(0, "gone@host|1|a")
    # Then it is not relaunched: the broker delivers its unacked message again
    assert w.review(orphans())[1] == {}


def test_a_starting_worker_re_arms_one_driver_per_running_workflow(app):
    # Given two running workflows and one that ended
    from dyrygent.engine.registry import processor_of
    from dyrygent.engine.sweep import rearm_drivers

    register_workflow_processor(app)

    @app.task(name="orphans.sweep.add", shared=False)
    def add(x, y):
        return x + y

    processor = processor_of(app)
    running = [DyrygentWorkflow(app=app) for _ in range(2)]
    ended = DyrygentWorkflow(app=app)
    for wf in [*running, ended]:
        wf.add_signature(add.si(1, 1))
        wf.apply_async()
    info = processor.store.status(ended.id)
    processor.store.claim(ended.id, info.gen, "t", False)
    processor.store.commit(ended.id, "t", {}, info.gen + 1, WorkflowStatus.SUCCEEDED)
    sent = []
    app.send_task = lambda name, args, **options: sent.append(tuple(args[:2]))  # the broker
    # When a worker starts
    count = rearm_drivers(processor)
    # Then each running workflow gets a driver for its current generation, the ended one none
    mine = {wf for wf, _ in sent} & {w.id for w in [*running, ended]}
    assert mine == {w.id for w in running} and count >= 2
    assert all(gen == processor.store.status(wf).gen for wf, gen in sent if wf in mine)
