"""Watching and steering workflows on a real Redis with real workers: state read from another
process, signals and hooks, cancel, retry, skip, link/link_error, forget.

These tests run their own worker on a queue of their own (``steer``), with dyrygent's signals
recorded to the ledger (DYRYGENT_TEST_SIGNALS=1) and processor runs recorded
(DYRYGENT_TEST_FAULTS=1), so a test can restart it without touching the session's worker.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
import redis as redis_lib
from celery.exceptions import TaskRevokedError

from dyrygent import Workflow, WorkflowResult, list_workflows, signals
from dyrygent.engine.notify import callback_id
from dyrygent.engine.stores import store_for
from dyrygent.engine.wake import PROCESSOR_NAME
from dyrygent.errors import BuildError, SteeringError
from tests.harness import ROOT, WORKER_APP_DIR, Worker, wait_for

QUEUE = "steer"


@pytest.fixture(scope="module")
def steer_env(env):
    return {
        **env,
        "DYRYGENT_TEST_QUEUE": QUEUE,
        "DYRYGENT_TEST_SIGNALS": "1",
        "DYRYGENT_TEST_FAULTS": "1",
        "DYRYGENT_TEST_VISIBILITY": "2",
    }


@pytest.fixture(scope="module")
def sapp(steer_env, app):  # (app: the session's environment is set for the ledger)
    import workerapp

    # this process records signals to the ledger too: make sure its client is the ledger's
    # (a module run earlier in the session may have made one for another server)
    os.environ["DYRYGENT_TEST_LEDGER"] = steer_env["DYRYGENT_TEST_LEDGER"]
    workerapp._ledger = None

    app = workerapp.make_app(
        steer_env["DYRYGENT_TEST_BROKER"],
        steer_env["DYRYGENT_TEST_BACKEND"],
        name="steer-client",
        queue=QUEUE,
    )
    workerapp.connect_recorders()
    yield app
    workerapp.connect_recorders(False)


@pytest.fixture(scope="module")
def sworker(steer_env, sapp):
    holder = {"w": Worker(steer_env, name="steer")}
    holder["w"].wait_ready(sapp)
    yield holder
    holder["w"].stop()


@pytest.fixture
def st(sapp, sworker):
    import workerapp

    return workerapp.Tasks(sapp)


@pytest.fixture
def lclient(redis_server):
    return redis_lib.Redis.from_url(redis_server.url(2))


def recorded(lclient) -> list[list]:
    return [json.loads(x) for x in lclient.lrange("signals", 0, -1)]


def watch(lclient, wf: Workflow) -> None:
    lclient.delete("signals")
    lclient.sadd("signals:watch", wf.id)


def store_clock(app) -> float:
    seconds, micros = store_for(app).client.time()
    return seconds + micros / 1e6


# --- watching ---------------------------------------------------------------------------


def test_info_is_read_mid_run_from_another_process(sapp, st, ledger, steer_env):
    # Given a chain whose first node runs until the test opens its gate, labelled, with
    # custom payloads
    key = f"steer-gate-{os.getpid()}"
    ledger.client.delete(key)
    wf = Workflow(app=sapp, custom_payload={"owner": "etl"})
    first = wf.add_signature(st.gate.s(7, key), label="slow", custom_payload={"step": 1})
    wf.add_signature(st.identity.s(), first, label="after")
    result = wf.apply_async()
    wait_for(lambda: first.id in ledger.runs(), 20, "the first node to start")
    # When another process reads the workflow by id alone
    code = (
        "import json, workerapp\n"
        "from dyrygent import WorkflowResult\n"
        f"app = workerapp.make_app({steer_env['DYRYGENT_TEST_BROKER']!r}, "
        f"{steer_env['DYRYGENT_TEST_BACKEND']!r}, name='reader', queue={QUEUE!r})\n"
        f"info = WorkflowResult({wf.id!r}, app=app).info()\n"
        "print(json.dumps([info.state, info.custom_payload, info.progress.total,\n"
        "  [(n.id, n.label, n.task, n.state, n.started_at is not None, n.custom_payload)\n"
        "   for n in info.nodes]]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(WORKER_APP_DIR),
        env={**os.environ, **steer_env, "PYTHONPATH": f"{WORKER_APP_DIR}{os.pathsep}{ROOT}"},
    )
    assert out.returncode == 0, out.stderr
    state, payload, total, nodes = json.loads(out.stdout.strip().splitlines()[-1])
    # Then it sees the running workflow, its nodes with labels, tasks and payloads
    assert (state, payload, total) == ("RUNNING", {"owner": "etl"}, 2)
    assert nodes[0][:3] == [first.id, "slow", "t.gate"]
    assert nodes[0][3] in ("LAUNCHED", "RUNNING") and nodes[0][4] is True
    assert nodes[0][5] == {"step": 1}
    assert nodes[1][1:4] == ["after", "t.identity", "WAITING"]
    # And once it ends, info() has the end, the counts, and each node's times
    ledger.client.set(key, 1)
    assert result.get(timeout=20) == 7  # (decided: the end is committed just after)
    info = wait_for(lambda: (i := result.info()).state == "SUCCESS" and i, 10, "the end")
    assert info.state == "SUCCESS" and info.progress.done == 2
    assert info.counts["SUCCEEDED"] == 2 and sum(info.counts.values()) == 2
    assert info.ended >= info.created
    assert all(n.attempts == 1 and n.ended_at >= n.started_at for n in info.nodes)
    news = [e.new for e in result.history() if e.node == first.id]
    assert news[0] == "LAUNCHED" and news[-1] == "SUCCEEDED"
    assert set(news) <= {"LAUNCHED", "RUNNING", "SUCCEEDED"}
    assert wf.id in [i.id for i in list_workflows(sapp, state="SUCCESS", limit=500)]
    assert result.progress().done == 2


# --- signals and hooks ------------------------------------------------------------------


def test_signals_and_hooks_are_sent_once_each_in_order(sapp, st, lclient):
    # Given a chain a -> b with hooks connected on the instance, its signals recorded
    import workerapp

    wf = Workflow(app=sapp)
    a = wf.add_signature(st.add.s(1, 2))
    b = wf.add_signature(st.mul.s(10), a)
    wf.connect("on_finish")(workerapp.hook_on_finish)
    wf.connect("on_state_change")(workerapp.hook_on_state_change)
    watch(lclient, wf)
    # When it runs to its end
    assert wf.apply_async().get(timeout=20) == 30
    wait_for(lambda: len(recorded(lclient)) >= 10, 10, "every signal and hook")
    entries = recorded(lclient)
    # Then each was sent once, in the order its process committed the change: the client's
    # first tick launched a; the workers' ticks did the rest (two processes' sends may
    # interleave in the ledger, so each process's order is checked)
    mine = [e[:2] for e in entries if e[2] == os.getpid()]
    theirs = [e[:2] for e in entries if e[2] != os.getpid()]
    assert mine == [["node_started", a.id], ["after_tick", 1]]
    assert theirs == [
        ["node_succeeded", a.id],
        ["node_started", b.id],
        ["after_tick", 1],
        ["node_succeeded", b.id],
        ["workflow_state_changed", "SUCCESS"],
        ["hook:on_state_change", "SUCCESS"],
        ["workflow_finished", "SUCCESS"],
        ["hook:on_finish", "SUCCESS"],
    ]
    assert all(e[3] == wf.id for e in entries if e[0].startswith("hook:"))


def test_a_failed_node_is_signalled_with_its_error(sapp, st, lclient):
    # Given a failing node whose failure is recorded
    wf = Workflow(app=sapp)
    bad = wf.add_signature(st.fail.s())
    watch(lclient, wf)
    with pytest.raises(Exception, match="expected failure"):
        wf.apply_async().get(timeout=20)
    # Then node_failed names it, and info() gives its error
    wait_for(lambda: ["node_failed", bad.id] in [e[:2] for e in recorded(lclient)], 10, "it")
    node = WorkflowResult(wf.id, app=sapp).info().nodes[0]
    assert node.error == {"type": "ExpectedError", "message": "expected failure"}


def test_a_raising_receiver_is_logged_and_harmless_and_senders_filter(sapp, st, caplog):
    # Given a receiver that raises, connected for this app only, and one for another app
    seen: list[str] = []
    other: list[str] = []

    def boom(sender=None, node_id=None, **_):
        seen.append(node_id)
        raise RuntimeError("receiver broke")

    def elsewhere(sender=None, node_id=None, **_):
        other.append(node_id)

    another_app = object()
    signals.node_started.connect(boom, sender=sapp, weak=False)
    signals.node_started.connect(elsewhere, sender=another_app, weak=False)
    try:
        wf = Workflow(app=sapp)
        a = wf.add_signature(st.add.s(2, 2))
        # When the workflow starts (its first tick, in this process, launches a)
        with caplog.at_level(logging.ERROR):
            result = wf.apply_async()
        # Then the receiver ran, its error was logged with its traceback, and the
        # workflow went on; the other app's receiver heard nothing
        assert seen == [a.id] and other == []
        assert any("receiver broke" in r.getMessage() and r.exc_info for r in caplog.records)
        assert result.get(timeout=20) == 4
    finally:
        signals.node_started.disconnect(boom, sender=sapp)
        signals.node_started.disconnect(elsewhere, sender=another_app)


def test_hooks_must_be_importable_functions_and_never_on_the_base_class():
    wf = Workflow()
    with pytest.raises(BuildError, match="module-level function"):
        wf.connect("on_finish")(lambda w, p: None)
    with pytest.raises(BuildError, match="subclass Workflow"):
        Workflow.connect("on_finish")(
            test_hooks_must_be_importable_functions_and_never_on_the_base_class
        )
    with pytest.raises(BuildError, match="unknown workflow hook"):
        wf.connect("on_start")


# --- cancel -----------------------------------------------------------------------------


def test_cancel_mid_run_launches_nothing_more_and_survives_a_restart(
    sapp, st, ledger, sworker, steer_env
):
    # Given a chain whose first node runs (until its gate opens) while the rest wait
    key = f"steer-cancel-{os.getpid()}"
    ledger.client.delete(key)
    wf = Workflow(app=sapp)
    first = wf.add_signature(st.gate.s(1, key))
    second = wf.add_signature(st.identity.s(), first)
    third = wf.add_signature(st.identity.s(), second)
    result = wf.apply_async()
    wait_for(lambda: first.id in ledger.runs(), 20, "the first node to start")
    # When it is cancelled
    assert result.cancel() is True
    cancelled_at = store_clock(sapp)
    # Then it is CANCELLED at once, every node settled, get() raises TaskRevokedError
    info = result.info()
    assert info.state == "CANCELLED" and info.ended is not None
    assert {n.state for n in info.nodes} == {"CANCELLED"}
    with pytest.raises(TaskRevokedError):
        result.get(timeout=5)
    # and cancelling again is a no-op that says so
    assert result.revoke() is False
    # When the first node then ends (it was running: terminate=False lets it finish)
    ledger.client.set(key, 1)
    assert sapp.AsyncResult(first.id).get(timeout=20) == 1
    # When the worker is killed and restarted, and duplicate processor messages arrive
    sworker["w"].kill()
    sworker["w"] = Worker(steer_env, name="steer")
    sworker["w"].wait_ready(sapp)
    for gen in (0, 1, None):
        sapp.send_task(PROCESSOR_NAME, (wf.id, gen), queue=QUEUE)

    def dup_runs() -> int:
        runs = [json.loads(x) for x in ledger.client.lrange("processor", 0, -1)]
        return sum(1 for r in runs if r[1][:1] == [wf.id] and "done" in r[2])

    wait_for(lambda: dup_runs() >= 3, 20, "the duplicate processor messages to be handled")
    # Then nothing else ran: only the first node, started before cancel() returned
    assert set(ledger.runs()) == {first.id}
    assert all(e[5] < cancelled_at for e in ledger.entries())
    assert second.id not in ledger.runs() and third.id not in ledger.runs()
    assert result.info().state == "CANCELLED"


# --- retry ------------------------------------------------------------------------------


def test_retry_after_a_failure_reruns_only_what_failed(sapp, st, ledger):
    # Given a -> b -> c where b fails until a key is set
    key = f"steer-retry-{os.getpid()}"
    ledger.client.delete(key)
    wf = Workflow(app=sapp)
    a = wf.add_signature(st.add.s(1, 2))
    b = wf.add_signature(st.fail_until.s(key), a, label="flaky-step")
    c = wf.add_signature(st.mul.s(10), b)
    result = wf.apply_async()
    with pytest.raises(Exception, match="not set"):
        result.get(timeout=20)
    wait_for(lambda: result.info().state == "FAILURE", 10, "the failure to end it")
    assert result.info().counts["UPSTREAM_FAILED"] == 1
    # When the cause is fixed and the workflow retried
    ledger.client.set(key, 1)
    result = WorkflowResult(wf.id, app=sapp)  # (any handle: this one never saw the end)
    assert result.retry() is True
    # Then it ends with the right result; a ran once, b twice, c once
    assert result.get(timeout=20) == 30
    assert ledger.runs() == {a.id: 1, b.id: 2, c.id: 1}
    info = wait_for(lambda: (i := result.info()).state == "SUCCESS" and i, 10, "the end")
    assert info.state == "SUCCESS"
    assert {n.id: n.attempts for n in info.nodes} == {a.id: 1, b.id: 2, c.id: 1}
    # When chosen nodes (by label) are retried on the succeeded workflow
    assert result.retry(nodes=["flaky-step"]) is True
    # Then b and its descendant c run again, a does not
    assert result.get(timeout=20) == 30
    assert ledger.runs() == {a.id: 1, b.id: 3, c.id: 2}
    wait_for(lambda: result.info().state == "SUCCESS", 10, "the end")
    # And a retry whose kept result expired fails first, naming the node, changing nothing
    sapp.backend.forget(a.id)
    with pytest.raises(SteeringError, match=f"result of node {a.id}"):
        result.retry(nodes=[b.id])
    assert result.info().state == "SUCCESS"
    with pytest.raises(SteeringError, match="no node with that id or label"):
        result.retry(nodes=["nope"])


def test_retry_of_a_running_workflow_is_refused(sapp, st, ledger):
    key = f"steer-running-{os.getpid()}"
    ledger.client.delete(key)
    wf = Workflow(app=sapp)
    wf.add_signature(st.gate.s(1, key))
    result = wf.apply_async()
    with pytest.raises(SteeringError, match="is running: cancel"):
        result.retry()
    ledger.client.set(key, 1)
    assert result.get(timeout=20) == 1


# --- skip, callbacks, forget ------------------------------------------------------------


def test_a_skipped_node_gives_its_result_to_its_children(sapp, st, ledger):
    # Given a -> b with a skipped, its result given
    wf = Workflow(app=sapp)
    a = wf.add_signature(st.add.s(1, 2))
    b = wf.add_signature(st.mul.s(10), a)
    wf.skip(a, result=5)
    assert wf.simulate() == [[b.id]]
    # When it runs, Then b gets 5 and a never ran
    assert wf.apply_async().get(timeout=20) == 50
    assert ledger.runs() == {b.id: 1}


def test_link_and_link_error_are_called_exactly_once(sapp, st, ledger):
    # Given a workflow that succeeds with link, and one that fails with link_error
    ok = Workflow(app=sapp, link=st.identity.s(), link_error=st.echo.s())
    ok.add_signature(st.add.s(20, 22))
    bad = Workflow(app=sapp, link=st.identity.s(), link_error=st.echo.s())
    culprit = bad.add_signature(st.fail.s())
    assert ok.apply_async().get(timeout=20) == 42
    with pytest.raises(Exception, match="expected failure"):
        bad.apply_async().get(timeout=20)
    link, link_error = callback_id(ok.id, "link"), callback_id(bad.id, "link_error")
    wait_for(lambda: {link, link_error} <= set(ledger.runs()), 20, "both callbacks")
    # Then link got the result, link_error the failed node and its error, once each
    args = ledger.args_of()
    assert args[link][0] == [42]
    assert args[link_error][0] == [
        culprit.id,
        {"type": "ExpectedError", "message": "expected failure"},
    ]
    assert sapp.AsyncResult(link).get(timeout=10) == 42
    runs = ledger.runs()
    assert (runs[link], runs[link_error]) == (1, 1)
    assert callback_id(ok.id, "link_error") not in runs and callback_id(bad.id, "link") not in runs


def test_forget_deletes_the_workflow_and_its_results(sapp, st):
    # Given a finished workflow
    wf = Workflow(app=sapp)
    a = wf.add_signature(st.add.s(1, 1))
    result = wf.apply_async()
    assert result.get(timeout=20) == 2
    # When it is forgotten
    result.forget()
    # Then nothing of it is left: no record, no listing, no node result
    assert WorkflowResult(wf.id, app=sapp).info().state == "PENDING"
    assert wf.id not in [i.id for i in list_workflows(sapp, limit=1000)]
    assert sapp.AsyncResult(a.id).state == "PENDING"
    assert sapp.AsyncResult(wf.id).state == "PENDING"


def test_nodes_carry_the_workflow_as_root_and_a_real_parent(sapp, st, lclient):
    # Given a -> b and a root c, every publish's lineage recorded (workers and here)
    import workerapp

    lclient.delete("publish:lineage")
    wf = Workflow(app=sapp)
    a = wf.add_signature(st.add.s(1, 1))
    b = wf.add_signature(st.mul.s(2), a)
    c = wf.add_signature(st.noop.s())
    with workerapp.recording_lineage():
        assert wf.apply_async().get(timeout=20) is None
    # Then, as Flower sees them, every node's root is the workflow, b's parent is a, the
    # roots' parent the workflow; the processor's own messages have the workflow as root
    lineage = {}
    for raw in lclient.lrange("publish:lineage", 0, -1):
        task_id, task, root, parent, args = json.loads(raw)
        if task == PROCESSOR_NAME:
            if args and args[0] == wf.id:
                assert root == wf.id
            continue
        lineage[task_id] = (root, parent)
    assert lineage[a.id] == (wf.id, wf.id) and lineage[c.id] == (wf.id, wf.id)
    assert lineage[b.id] == (wf.id, a.id)


def test_records_live_as_long_as_the_results(sapp, st):
    # Given an app keeping results an hour, and a workflow of at most 10 minutes
    assert sapp.conf.result_expires == 3600
    wf = Workflow(app=sapp, max_age=600)
    wf.add_signature(st.add.s(1, 1))
    result = wf.apply_async()
    # Then its records expire max_age + result_expires after creation, not days later
    store = store_for(sapp)
    ttl = store.client.ttl(f"{store.prefix}{wf.id}:m")
    assert 4100 <= ttl <= 4200
    assert result.get(timeout=20) == 2
