"""Adopting celery-dyrygent workflows in flight, end to end: workflows started by the real
celery-dyrygent 0.8.0 processor on a worker, that worker stopped mid-run, and a worker with
``dyrygent.tasks.register_workflow_processor(app, adopt_celery_dyrygent=True)`` started:
every workflow completes, and no node runs twice (the ledger)."""

from __future__ import annotations

import os
import signal

from celery.result import AsyncResult
from celery_dyrygent.tasks import register_workflow_processor as cd_register
from celery_dyrygent.workflows import Workflow as CDWorkflow

from dyrygent.core.states import WorkflowStatus
from dyrygent.engine.stores import store_for
from tests.compat.helpers import SEED_23, SEED_57
from tests.harness import Worker, wait_for

QUEUE = "adopt"


def build(t, shape_or_canvas):
    counter = iter(range(10_000))

    def s():
        return t.sleep_then.s(next(counter), 0.1)

    canvas = shape_or_canvas(s)
    wf = CDWorkflow()
    wf.add_celery_canvas(canvas)
    wf.set_retry_policy("random", 1, 1)  # a tick a second (celery-dyrygent's default: 10-30 s)
    return wf


def readme_example(s):
    from celery import chain, chord

    return chain(s(), s()) | chord([s() for _ in range(3)], s())


def test_workflows_celery_dyrygent_was_running_complete_under_dyrygent(env, ledger):
    import workerapp

    env = {**env, "DYRYGENT_TEST_QUEUE": QUEUE}
    client = workerapp.make_app(
        env["DYRYGENT_TEST_BROKER"], env["DYRYGENT_TEST_BACKEND"], name="cd-client", queue=QUEUE
    )
    cd_register(client, shared=False)
    t = workerapp.Tasks(client)
    old = Worker(env, app="cdworkerapp", name="cd")
    new = None
    try:
        old.wait_ready(client)
        # Given three workflows written for celery-dyrygent, started by its own processor
        workflows = [build(t, readme_example), build(t, SEED_57.build), build(t, SEED_23.build)]
        ids = [wf.apply_async().id for wf in workflows]
        # When its worker stops mid-run (a warm shutdown: the processor messages go back to
        # the queue), with some nodes done and none of the workflows finished
        wait_for(lambda: len(ledger.ends()) >= 8, 30, "some nodes to end under celery-dyrygent")
        os.kill(old.pid, signal.SIGTERM)  # the main process only: running tasks finish
        old.proc.wait(30)
        done_before = set(ledger.ends())
        states = [AsyncResult(i, app=client).state for i in ids]
        assert not set(states) & {"SUCCESS", "FAILURE"}, states  # (RETRY: its processor's)
        # and a worker with dyrygent's processor and adopt_celery_dyrygent=True starts
        new = Worker(env, app="adoptapp", name="adopt")
        new.wait_ready(client)
        # Then every workflow completes under dyrygent (its result: None, as celery-dyrygent's)
        store = store_for(client)
        for wf_id in ids:
            assert AsyncResult(wf_id, app=client).get(timeout=60) is None
            # (the result is stored as the last tick decides, its status as it commits)
            wait_for(
                lambda i=wf_id, store=store: store.status(i).status is WorkflowStatus.SUCCEEDED,
                10,
                f"workflow {wf_id} to end SUCCEEDED under dyrygent",
            )
    finally:
        old.stop()
        if new is not None:
            new.stop()
    # and every node ran exactly once, with its own arguments, after its dependencies
    runs, starts, ends, args = ledger.runs(), ledger.starts(), ledger.ends(), ledger.args_of()
    for wf in workflows:
        for node_id, node in wf.nodes.items():
            assert runs.get(node_id) == 1, f"node {node_id} ran {runs.get(node_id, 0)} times"
            assert args[node_id] == [list(node.signature.args), node.signature.kwargs]
            for dep in node.dependencies:
                assert starts[node_id][0] >= ends[dep][0]
    assert done_before and len(done_before) < sum(len(wf.nodes) for wf in workflows)


def test_a_worker_with_celery_dyrygents_processor_too_refuses_to_start(env):
    # Given a worker module that still registers celery-dyrygent's processor (a shared task,
    # which takes the name workflow-processor first) next to dyrygent's adopter
    w = Worker({**env, "DYRYGENT_TEST_QUEUE": QUEUE}, app="cdbothapp", name="both")
    try:
        # Then the worker exits at start, naming the call to drop
        assert w.proc.wait(60) != 0
        assert "drop celery_dyrygent.tasks.register_workflow_processor(app)" in w.tail()
    finally:
        w.stop()
