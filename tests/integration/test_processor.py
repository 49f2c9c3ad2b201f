"""The processor and the workflow result, end to end on a real Redis and a real worker."""

from __future__ import annotations

import pytest
from celery import chain, chord, group
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult

from dyrygent import Workflow
from dyrygent.core.states import WorkflowStatus
from dyrygent.engine.processor import PROCESSOR_NAME
from dyrygent.engine.stores import store_for
from tests.harness import wait_for


def start(app, canvas, **kw):
    wf = Workflow(app=app)
    wf.add_celery_canvas(canvas)
    return wf, wf.apply_async(**kw)


def test_result_is_the_workflow_id_and_every_node_has_its_own_result(app, t, ledger):
    # Given a chord whose nodes were not frozen by the caller
    wf, result = start(app, chord([t.add.s(i, i) for i in range(3)], t.tsum.s()))
    # Then the workflow result lives under the workflow id
    assert result.id == wf.id
    assert result.get(timeout=20) == 6
    # And every node's own AsyncResult holds its value
    assert [AsyncResult(n.id, app=app).get(timeout=5) for n in wf.nodes] == [0, 2, 4, 6]
    assert [result.node(n).get(timeout=5) for n in wf.nodes] == [0, 2, 4, 6]
    wait_for(lambda: set(result.states().values()) == {"SUCCEEDED"}, 10, "the final commit")
    assert sorted(ledger.runs()) == sorted(n.id for n in wf.nodes)


def test_get_honours_its_timeout(app, t):
    _, result = start(app, chain(t.sleep_then.s(5, 1.0), t.add.s(1)))
    with pytest.raises(CeleryTimeoutError):
        result.get(timeout=0.2)
    assert result.get(timeout=20) == 6


def test_node_options_from_apply_async_reach_every_node(app, t):
    # Given a group of tasks that report what reached them besides their arguments
    wf = Workflow(app=app)
    wf.add_celery_canvas(group(t.request_info.si(), t.request_info.si(), t.request_info.si()))
    # When the workflow starts with node options for every node
    result = wf.apply_async(options={"headers": {"x-trace": "abc"}, "priority": 3})
    # Then every node was delivered with that header and that priority
    seen = result.get(timeout=20)
    assert [(r["headers"], r["priority"]) for r in seen] == [({"x-trace": "abc"}, 3)] * 3


def test_per_signature_options_reach_their_own_node_only(app, t, worker, ledger):
    """README, Semantics, item 5: queue, priority, countdown, expires, time limits and headers
    set on one signature reach that node's message."""
    queue = "options-q"
    replies = app.control.add_consumer(queue, reply=True, timeout=5)
    assert replies, "the worker did not confirm consuming the extra queue"
    try:
        # Given a chain whose nodes each carry one option (and a last one with none)
        info = t.request_info
        wf = Workflow(app=app)
        wf.add_celery_canvas(
            chain(
                info.si().set(queue=queue),
                info.si().set(priority=7),
                info.si().set(countdown=0.5),
                info.si().set(expires=600),
                info.si().set(soft_time_limit=30, time_limit=40),
                info.si().set(headers={"x-node": "5"}),
                info.si(),
            )
        )
        # When it runs
        result = wf.apply_async()
        result.get(timeout=20)
        seen = [result.node(n).get(timeout=5) for n in wf.nodes]
    finally:
        app.control.cancel_consumer(queue, reply=True, timeout=5)
    # Then each node got its own option, and the plain node none of them
    plain = seen[-1]
    assert plain["queue"] == "celery" and plain["priority"] in (None, 0)
    assert plain["eta"] is None and plain["expires"] is None
    assert plain["timelimit"] == [None, None] and plain["headers"] == {}
    assert seen[0]["queue"] == queue
    assert seen[1]["priority"] == 7
    assert seen[2]["eta"] is not None
    # (the countdown counts from the launch, after the previous node ended: one clock, Redis's)
    waited = min(ledger.starts()[wf.nodes[2].id]) - min(ledger.ends()[wf.nodes[1].id])
    assert waited >= 0.45, waited
    assert seen[3]["expires"] is not None
    assert seen[4]["timelimit"] == [40, 30]
    assert seen[5]["headers"] == {"x-node": "5"}
    assert all(s["queue"] == "celery" for s in seen[1:])


def test_duplicate_processor_messages_launch_nothing(app, t, ledger):
    # Given a running workflow whose first node takes a while
    wf, result = start(app, chain(t.sleep_then.s(1, 0.5), t.add.s(1), t.add.s(1)))
    first = wf.nodes[0].id
    wait_for(lambda: first in ledger.runs(), 20, "the first node to start")
    # When stale copies of the processor message (generation 0) and spurious wake-ups arrive
    sent = []
    for _ in range(3):
        sent.append(app.send_task(PROCESSOR_NAME, (wf.id, 0)).id)
        sent.append(app.send_task(PROCESSOR_NAME, (wf.id, None)).id)
    # Then the workflow completes, and once every copy was handled no node had run twice
    assert result.get(timeout=20) == 3
    wait_for(lambda: ledger.handled(*sent), 20, "the worker to handle every copy")
    runs = ledger.runs()
    assert [runs.get(n.id) for n in wf.nodes] == [1, 1, 1]


def test_a_processor_message_for_an_unknown_workflow_is_harmless(app, t, ledger):
    # Given a processor message for a workflow that does not exist, handled by a worker
    sent = app.send_task(PROCESSOR_NAME, ("no-such-workflow", 0))
    wait_for(lambda: ledger.handled(sent.id), 20, "the worker to handle the message")
    # Then it launched nothing, and the worker still runs workflows
    assert ledger.entries() == []
    _, result = start(app, t.add.si(2, 3))
    assert result.get(timeout=20) == 5


def test_state_is_one_byte_per_node_and_ends_succeeded(app, t):
    wf, result = start(app, group(t.noop.si() for _ in range(50)))
    assert result.get(timeout=30) == [None] * 50
    wait_for(
        lambda: store_for(app).status(wf.id).status is not WorkflowStatus.RUNNING, 10, "the commit"
    )
    status = store_for(app).status(wf.id)
    assert status.states == bytes([2]) * 50
    assert status.status is WorkflowStatus.SUCCEEDED


def test_a_failure_settles_its_descendants_upstream_failed_and_none_of_them_runs(app, t, ledger):
    import workerapp

    wf, result = start(app, chain(t.add.si(1, 1), t.fail.s(), t.add.s(1), t.add.s(2)))
    with pytest.raises(workerapp.ExpectedError, match="expected failure"):
        result.get(timeout=20)
    # the result is written just before the final state commit (so a crash between the two
    # cannot lose the result): wait for the commit
    wait_for(lambda: list(result.states().values())[1] == "FAILED", 10, "the final commit")
    assert list(result.states().values()) == [
        "SUCCEEDED",
        "FAILED",
        "UPSTREAM_FAILED",
        "UPSTREAM_FAILED",
    ]
    wait_for(lambda: store_for(app).status(wf.id).status == "failed", 10, "the end")
    runs = ledger.runs()
    assert wf.nodes[2].id not in runs and wf.nodes[3].id not in runs


def test_many_workflows_at_once(app, t):
    results = [start(app, chain(t.add.si(i, 0), t.add.s(1), t.add.s(1)))[1] for i in range(20)]
    assert [r.get(timeout=60) for r in results] == [i + 2 for i in range(20)]


def test_node_retries_are_waited_for(app, t, ledger):
    # Given a node that retries twice (self.retry) before succeeding
    key = f"flaky-{id(ledger)}-{__import__('time').time()}"
    wf, result = start(app, chain(t.flaky.s(7, key, 2), t.add.s(1)))
    # Then the workflow waits for it instead of failing
    assert result.get(timeout=30) == 8
    assert ledger.runs()[wf.nodes[0].id] == 3


def test_a_result_evicted_while_its_node_runs_ends_the_workflow_with_a_clear_error(app, t):
    from dyrygent import WorkflowError

    # Given a long node the processor has seen running (task_track_started is on)
    wf, result = start(app, chain(t.sleep_then.s(1, 3.0), t.add.s(1)))
    wait_for(lambda: result.states()[wf.nodes[0].id] == "RUNNING", 20, "the node to run")
    # When its result is evicted from the backend
    app.backend.client.delete(app.backend.get_key_for_task(wf.nodes[0].id))
    # Then the workflow ends at once, naming the node and the cause
    with pytest.raises(
        WorkflowError,
        match=rf"node {wf.nodes[0].id} \(t.sleep_then\) was seen "
        r"running.*vanished.*result_expires",
    ):
        result.get(timeout=2.5)


def test_a_first_tick_longer_than_the_drivers_countdown_runs_each_node_once(app, t, ledger):
    # Given a group so large that the client's first tick (publishing it) outlasts the
    # driver's countdown (0.5 s in the test app): the driver arrives mid-tick
    wf, result = start(app, group(t.noop.si() for _ in range(1500)))
    # Then it waits for the client instead of re-ticking concurrently: each node ran once
    assert result.get(timeout=120) == [None] * 1500
    runs = ledger.runs()
    assert len(runs) == 1500 and set(runs.values()) == {1}


def test_a_workflow_past_its_maximum_age_ends_in_error(app, t, ledger):
    from dyrygent import WorkflowError

    # Given a workflow allowed one second, whose first node takes three
    wf = Workflow(app=app, max_age=1)
    wf.add_celery_canvas(chain(t.sleep_then.s(1, 3.0), t.add.s(1)))
    result = wf.apply_async()
    # Then the driver's next tick after the deadline (on Redis's clock) ends it, and the
    # node after the slow one never runs
    with pytest.raises(WorkflowError, match=r"passed its maximum age.*max_age"):
        result.get(timeout=20)
    wait_for(lambda: wf.nodes[0].id in ledger.runs(), 10, "the slow node to have run")
    assert wf.nodes[1].id not in ledger.runs()


def test_outcomes_are_read_in_one_batched_round_trip_on_redis(app, t):
    from dyrygent.engine.results import read_metas

    # Given finished nodes
    r = group(t.add.si(i, i) for i in range(50)).apply_async()
    r.get(timeout=20)
    ids = [c.id for c in r.results]
    client = app.backend.client

    def calls(cmd):
        return client.info("commandstats").get(f"cmdstat_{cmd}", {}).get("calls", 0)

    before = calls("mget"), calls("get")
    # When the processor reads their outcomes
    metas = read_metas(app.backend, ids)
    # Then it took one MGET and no GET (README, Reliability, item 4)
    assert (calls("mget") - before[0], calls("get") - before[1]) == (1, 0)
    assert [m["result"] for m in metas] == [2 * i for i in range(50)]


def test_outcomes_are_read_in_one_query_on_the_database_backend(db_app, dt):
    import sqlalchemy as sa

    from dyrygent.engine.results import read_metas

    # Given finished nodes (one failed), and one never run
    r = group([dt.add.si(i, i) for i in range(50)] + [dt.fail.si()]).apply_async()
    r.join(timeout=30, propagate=False)
    ids = [c.id for c in r.results] + ["never-ran"]
    backend = db_app.backend
    statements: list[str] = []  # every engine's (the backend makes one per session)

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    try:
        # When the processor reads their outcomes
        metas = read_metas(backend, ids)
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)
    # Then it took one query, and each meta is what Celery itself reads for that task
    assert len(statements) == 1, statements
    assert [m["result"] for m in metas[:50]] == [2 * i for i in range(50)]
    assert metas[50]["status"] == "FAILURE"
    assert type(metas[50]["result"]) is type(backend.get_task_meta(ids[50])["result"])
    assert metas[51]["status"] == "PENDING"
