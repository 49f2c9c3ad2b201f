"""Hostile or corrupted input reaching the processor: rejected, nothing launched, and the
worker still runs the next good workflow (README, Reliability, item 9)."""

from __future__ import annotations

import pytest
from celery.result import AsyncResult

from dyrygent import Workflow, WorkflowError
from dyrygent.engine.processor import PROCESSOR_NAME
from dyrygent.engine.spec import Header, encode_header
from dyrygent.engine.stores import store_for
from dyrygent.engine.trust import seal
from tests.harness import wait_for


def good_workflow_still_runs(app, t):
    wf = Workflow(app=app)
    wf.add_celery_canvas(t.add.si(20, 22))
    assert wf.apply_async().get(timeout=20) == 42


@pytest.mark.parametrize(
    "args, kwargs",
    [
        ((42, 0), {}),  # workflow id of the wrong type
        (("x" * 500, 0), {}),  # oversized id
        (("wf", "0"), {}),  # generation of the wrong type
        (("wf", -3), {}),
        (("wf", 0), {"idle": 10**9}),  # an idle count out of range, or not an int
        (("wf", 0, -1), {}),
        (("wf", 0, "1"), {}),
        (("wf", 0), {"serializer": "pickle"}),  # options smuggled in as arguments
    ],
)
def test_malformed_processor_messages_are_rejected(app, t, ledger, args, kwargs):
    # Given a malformed processor message, handled by a worker
    sent = app.send_task(PROCESSOR_NAME, args, kwargs)
    wait_for(lambda: ledger.handled(sent.id), 20, "the worker to handle the message")
    # Then it launched nothing, and the worker still runs a good workflow
    assert ledger.entries() == []
    good_workflow_still_runs(app, t)
    assert len(ledger.entries()) == 1  # only the good workflow's node ran


@pytest.mark.parametrize(
    "graph, reason",
    [
        (b"\x00\x01garbage", "not msgpack"),
        (b"\x92\xa8dyrygent\x07", "unknown format version 7"),
    ],
)
def test_a_corrupted_stored_graph_ends_the_workflow_with_the_reason(app, t, ledger, graph, reason):
    # Given a workflow whose stored graph was corrupted
    wf_id = f"corrupt-{reason.split()[0]}-{len(graph)}"
    store_for(app).create(wf_id, graph, seal(app, graph, encode_header(Header())), 1, 3600)
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
    # When generation 0 is replayed after the workflow finished, and a worker handles it
    sent = app.send_task(PROCESSOR_NAME, (wf.id, 0))
    wait_for(lambda: ledger.handled(sent.id), 20, "the worker to handle the replay")
    # Then the node did not run again, and the worker still runs a good workflow
    assert ledger.runs()[wf.nodes[0].id] == 1
    good_workflow_still_runs(app, t)


def start_with_stored(app, wf: Workflow, tamper=None, header=None):
    """Store ``wf`` as apply_async would, optionally tampered, then send its processor."""
    from dyrygent.core.codec import encode_graph

    data = encode_graph(wf.freeze())
    sealed = seal(app, data, encode_header(header or Header()))
    if tamper is not None:
        data, sealed = tamper(data, sealed)
    store_for(app).create(wf.id, data, sealed, len(wf.nodes), 3600)
    app.send_task(PROCESSOR_NAME, (wf.id, 0))
    return AsyncResult(wf.id, app=app)


def test_a_node_naming_an_unknown_task_is_refused(app, t, ledger):
    wf = Workflow(app=app)
    wf.add_celery_canvas(app.signature("os.system", args=("true",)))
    with pytest.raises(
        WorkflowError,
        match=r"names task 'os.system', which this worker does "
        r"not know.*known_tasks",
    ):
        start_with_stored(app, wf).get(timeout=20)
    good_workflow_still_runs(app, t)


def test_the_client_refuses_an_unknown_task_or_pickle_before_storing_or_publishing(app, t):
    from dyrygent import PayloadError

    # Given workflows the workers would refuse
    unknown = Workflow(app=app)
    unknown.add_celery_canvas(app.signature("os.system", args=("true",)))
    pickled = Workflow(app=app)
    pickled.add_celery_canvas(t.add.si(1, 1).set(serializer="pickle"))
    # When they are started, then the client refuses them with the workers' reason
    with pytest.raises(PayloadError, match=r"names task 'os.system', which this worker"):
        unknown.apply_async()
    with pytest.raises(PayloadError, match=r"asks for serializer 'pickle'"):
        pickled.apply_async()
    # and nothing was stored (nor published: the first tick never ran)
    for wf in (unknown, pickled):
        assert store_for(app).status(wf.id).status is None
        assert AsyncResult(wf.nodes[0].id, app=app).state == "PENDING"


def test_a_node_asking_for_pickle_is_refused(app, t, ledger):
    wf = Workflow(app=app)
    wf.add_celery_canvas(t.add.si(1, 1).set(serializer="pickle"))
    with pytest.raises(WorkflowError, match=r"asks for serializer 'pickle'"):
        start_with_stored(app, wf).get(timeout=20)
    assert ledger.entries() == []
    good_workflow_still_runs(app, t)


def test_with_a_signing_key_an_altered_graph_is_refused(redis_server, ledger):
    import workerapp

    from tests.harness import Worker

    # Given a worker and a client sharing a signing key, on their own queue
    env = {
        "DYRYGENT_TEST_BROKER": redis_server.url(8),
        "DYRYGENT_TEST_BACKEND": redis_server.url(9),
        "DYRYGENT_TEST_LEDGER": redis_server.url(2),
        "DYRYGENT_TEST_QUEUE": "signed",
        "DYRYGENT_TEST_SIGNING_KEY": "s3cret",
    }
    app = workerapp.make_app(
        env["DYRYGENT_TEST_BROKER"],
        env["DYRYGENT_TEST_BACKEND"],
        name="signed-client",
        queue="signed",
    )
    app.conf.dyrygent_signing_key = "s3cret"
    worker = Worker(env, name="signed")
    try:
        worker.wait_ready(app)
        t = workerapp.Tasks(app)
        # When an attacker rewrites an argument in a stored graph
        wf = Workflow(app=app)
        wf.add_celery_canvas(t.add.si(1, 1))

        def alter(data, sealed):
            assert b"[[1, 1]" in data  # same length: the msgpack stays valid
            return data.replace(b"[[1, 1]", b"[[6, 6]"), sealed

        # Then the processor refuses it and runs nothing
        with pytest.raises(WorkflowError, match="wrong signature.*altered"):
            start_with_stored(app, wf, tamper=alter).get(timeout=20)
        assert ledger.entries() == []
        # And an untouched, signed workflow runs
        ok = Workflow(app=app)
        ok.add_celery_canvas(t.add.si(2, 3))
        assert ok.apply_async().get(timeout=20) == 5
    finally:
        worker.stop()


def test_unseal_checks_the_signature():
    from celery import Celery

    from dyrygent.engine.trust import unseal
    from dyrygent.errors import PayloadError

    signer = Celery("signer", set_as_current=False)
    signer.conf.dyrygent_signing_key = "k1"
    other = Celery("other", set_as_current=False)
    other.conf.dyrygent_signing_key = "k2"
    unsigned = Celery("unsigned", set_as_current=False)
    stored = seal(signer, b"graph", b"{}")
    assert unseal(signer, "wf", b"graph", stored) == b"{}"
    with pytest.raises(PayloadError, match="wrong signature.*altered"):
        unseal(signer, "wf", b"graph-altered", stored)
    with pytest.raises(PayloadError, match="wrong signature"):
        unseal(other, "wf", b"graph", stored)
    with pytest.raises(PayloadError, match="not signed"):
        unseal(signer, "wf", b"graph", seal(unsigned, b"graph", b"{}"))
    with pytest.raises(PayloadError, match="not sealed"):
        unseal(unsigned, "wf", b"graph", b"{}")
