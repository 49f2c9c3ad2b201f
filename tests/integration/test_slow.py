"""Long runs, deselected by default: ``python -m pytest -m slow`` (about 3 minutes).

A 10,000-node workflow end to end, and 100 workflows submitted together while a worker is
SIGKILLed every 20 seconds.
"""

from __future__ import annotations

import time

import pytest
from celery import chain, chord

from dyrygent import Workflow
from tests.harness import wait_for
from tests.integration.cluster import Cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def layered(t, layers: int, width: int):
    return chain(
        t.noop.si(),
        *[chord([t.noop.si() for _ in range(width)], t.noop.si()) for _ in range(layers)],
    )


def test_a_10000_node_workflow_runs_every_node_once(app, t, ledger):
    wf = Workflow(app=app)
    wf.add_celery_canvas(layered(t, 100, 99))  # 1 + 100 x (99 + 1) = 10,001 nodes
    assert len(wf.nodes) == 10_001
    result = wf.apply_async()
    assert result.get(timeout=300) is None
    runs = ledger.runs()
    assert len(runs) == 10_001 and set(runs.values()) == {1}


def test_100_workflows_survive_a_worker_killed_every_20_seconds(redis_server, ledger):
    # Given two fault-injecting workers on one queue, and 100 workflows of 26 nodes that
    # sleep 50 ms each (about 40 s of work for the four pool processes)
    c = Cluster(redis_server.url(10), redis_server.url(11), redis_server.url(2))
    c.start_worker()
    c.start_worker()
    try:
        nap = c.t.sleep_then.si(0, 0.05)
        workflows = []
        for _ in range(100):
            wf = Workflow(app=c.app)
            wf.add_celery_canvas(
                chain(
                    nap.clone(),
                    *[chord([nap.clone() for _ in range(4)], nap.clone()) for _ in range(5)],
                )
            )
            workflows.append((wf, wf.apply_async()))
        # When the oldest live worker is SIGKILLed every 20 s, and a new one started
        kills = 0
        started = time.monotonic()
        while not all(r.ready() for _, r in workflows):
            assert time.monotonic() - started < 400, "the workflows did not finish"
            try:
                wait_for(lambda: all(r.ready() for _, r in workflows), 20, "all workflows")
            except TimeoutError:
                victim = next(w for w in c.workers if w.proc.poll() is None)
                victim.kill()
                kills += 1
                c.start_worker()
        # Then every workflow succeeded; every node ran at least once, at most twice
        assert kills >= 1
        assert [r.get(timeout=10) for _, r in workflows] == [0] * 100
        runs = ledger.runs()
        counts = [runs.get(n.id, 0) for wf, _ in workflows for n in wf.nodes]
        assert len(counts) == 100 * 26
        assert min(counts) >= 1 and max(counts) <= 2, sorted(counts)[-5:]
    finally:
        c.stop()
