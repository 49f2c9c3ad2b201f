"""Transient faults are not failures: a result backend or Redis broker restart (with
persistence) mid-workflow fails no node, and the workflow completes after it
(RELIABILITY.md item 5). Each test owns its redis-servers and its worker."""

from __future__ import annotations

import itertools
import os
import time

import pytest
from celery import chain, group

from dyrygent import Workflow
from tests.harness import Ledger, RedisServer, Worker, wait_for

_names = itertools.count()


@pytest.fixture
def servers():
    broker, backend = RedisServer(persist=True), RedisServer(persist=True)
    yield broker, backend
    broker.stop()
    backend.stop()


def worker_env(broker: RedisServer, backend: RedisServer) -> dict[str, str]:
    return {"DYRYGENT_TEST_BROKER": broker.url(0), "DYRYGENT_TEST_BACKEND": backend.url(0),
            # the ledger lives on the broker's server: it must not vanish with the backend
            "DYRYGENT_TEST_LEDGER": broker.url(2), "DYRYGENT_TEST_QUEUE": "outages",
            "DYRYGENT_TEST_ACKS_LATE": "1", "DYRYGENT_TEST_VISIBILITY": "3"}


def cluster(broker: RedisServer, backend: RedisServer):
    import redis as redis_lib
    import workerapp

    env = worker_env(broker, backend)
    app = workerapp.make_app(broker.url(0), backend.url(0), name=f"outage-{next(_names)}",
                             queue="outages", visibility_timeout=3, acks_late=True)
    worker = Worker(env, name=f"outage{os.getpid()}")
    worker.wait_ready(app)
    return app, workerapp.Tasks(app), worker, Ledger(redis_lib.Redis.from_url(broker.url(2)))


def steps(t, n=8):
    return chain(t.sleep_then.s(0, 0.3), *[t.sleep_then.s(0.3) for _ in range(n - 1)],
                 group(t.add.s(i) for i in range(3)), t.tsum.s())


@pytest.mark.parametrize("which", ["backend", "broker"])
def test_a_redis_restart_mid_workflow_fails_nothing(servers, which):
    broker, backend = servers
    app, t, worker, ledger = cluster(broker, backend)
    try:
        # Given a workflow under way
        wf = Workflow(app=app)
        wf.add_celery_canvas(steps(t))
        result = wf.apply_async()
        wait_for(lambda: len(ledger.entries()) >= 3, 30, "three steps to run")
        # When the backend (or the broker) restarts, down for two seconds
        server = backend if which == "backend" else broker
        server.shutdown()
        time.sleep(2)  # the outage itself: nothing to await while the server is down
        server.start_again()
        # Celery 5.7's worker may exit on a lost broker connection ("Unrecoverable error:
        # AttributeError ... 'hostname'"); a supervisor would start it again, so do we
        if worker.proc.poll() is not None:
            worker.stop()
            worker = Worker(worker_env(broker, backend), name=f"outage{os.getpid()}b")
            worker.wait_ready(app)
        # Then the workflow completes with the right result, no node failed
        assert result.get(timeout=90) == 3 * 0 + sum(range(3))
        wait_for(lambda: set(result.states().values()) == {"SUCCEEDED"}, 10, "final commit")
        runs = ledger.runs()
        assert all(runs.get(n.id, 0) >= 1 for n in wf.nodes)
    finally:
        worker.stop()
