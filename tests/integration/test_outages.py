"""Transient faults are not failures (README, Reliability, item 5): a result backend restart, a
Redis broker restart (with persistence) and a RabbitMQ restart mid-workflow fail no node,
and the workflow completes after them; a publish that fails mid-launch loses no node; a
broker that refuses publishes for a while (while still taking acks) loses no workflow.

Each test owns its servers (a private redis-server, a private rabbitmq-server node) and its
worker, so stopping a broker never touches the machine's shared services.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from typing import Any

import pytest
from celery import chain, group

from dyrygent import Workflow
from tests.harness import Ledger, RabbitServer, RedisServer, Worker, wait_for

_names = itertools.count()


class Site:
    """A broker, a result backend (private redis-servers, or a private RabbitMQ node as the
    broker), a fault-injecting worker with acks_late, and the ledger (on the backend's
    server, db 2, so it survives a broker restart)."""

    def __init__(self, broker_kind: str) -> None:
        self.backend = RedisServer(persist=True)
        self.broker: Any = (
            RabbitServer() if broker_kind == "rabbitmq" else RedisServer(persist=True)
        )
        import redis as redis_lib
        import workerapp

        broker_url = self.broker.url if broker_kind == "rabbitmq" else self.broker.url(0)
        self.queue = f"outages-{next(_names)}"
        self.env = {
            "DYRYGENT_TEST_BROKER": broker_url,
            "DYRYGENT_TEST_BACKEND": self.backend.url(0),
            "DYRYGENT_TEST_LEDGER": self.backend.url(2),
            "DYRYGENT_TEST_QUEUE": self.queue,
            "DYRYGENT_TEST_FAULTS": "1",
            "DYRYGENT_TEST_ACKS_LATE": "1",
            "DYRYGENT_TEST_VISIBILITY": "3",
        }
        self.app = workerapp.make_app(
            broker_url,
            self.backend.url(0),
            name=f"client-{self.queue}",
            queue=self.queue,
            visibility_timeout=3,
            acks_late=True,
        )
        self.t = workerapp.Tasks(self.app)
        self.ledger = Ledger(redis_lib.Redis.from_url(self.backend.url(2)))
        self.workers: list[Worker] = []
        self.start_worker()

    @property
    def worker(self) -> Worker:
        return self.workers[-1]

    def start_worker(self) -> None:
        self.workers.append(Worker(self.env, name=f"outage{len(self.workers)}"))
        self.worker.wait_ready(self.app, timeout=90)

    def revive_worker(self) -> None:
        """Celery 5.7's worker may exit on a lost broker connection ("Unrecoverable error:
        AttributeError ... 'hostname'"); a supervisor would start it again, so do we."""
        if self.worker.proc.poll() is not None:
            self.start_worker()

    def failed_publishes(self) -> list[str]:
        """Node publishes the fault workers attempted that did not go through (an id
        tried twice and published once failed once)."""
        r = self.ledger.client
        tried = Counter(x.decode() for x in r.lrange("publish:tried", 0, -1))
        tried.subtract(x.decode() for x in r.lrange("publish:done", 0, -1))
        return sorted(+tried)

    def stop(self) -> None:
        for w in self.workers:
            w.stop()
        self.broker.stop()
        self.backend.stop()


@pytest.fixture
def site(request):
    s = Site(request.param)
    yield s
    s.stop()


RABBIT = [
    pytest.mark.rabbitmq,
    pytest.mark.skipif(not RabbitServer.available(), reason="rabbitmq-server is not installed"),
]
BROKERS = ["redis", pytest.param("rabbitmq", marks=RABBIT)]


def steps(t, n=8):
    return chain(
        t.sleep_then.s(0, 0.3),
        *[t.sleep_then.s(0.3) for _ in range(n - 1)],
        group(t.add.s(i) for i in range(3)),
        t.tsum.s(),
    )


def assert_completed(wf, result, ledger, value, at_most: int | None = None) -> None:
    assert result.get(timeout=120) == value
    wait_for(lambda: set(result.states().values()) == {"SUCCEEDED"}, 10, "the final commit")
    runs = ledger.runs()
    counts = [runs.get(n.id, 0) for n in wf.nodes]
    assert all(c >= 1 for c in counts), counts
    if at_most is not None:
        assert all(c <= at_most for c in counts), counts


@pytest.mark.parametrize(
    "site,which",
    [
        pytest.param("redis", "backend", id="redis-backend"),
        pytest.param("redis", "broker", id="redis-broker"),
        pytest.param("rabbitmq", "broker", id="rabbitmq-broker", marks=RABBIT),
    ],
    indirect=["site"],
)
def test_a_server_restart_mid_workflow_fails_nothing(site, which):
    # Given a workflow under way
    wf = Workflow(app=site.app)
    wf.add_celery_canvas(steps(site.t))
    result = wf.apply_async()
    wait_for(lambda: len(site.ledger.entries()) >= 3, 30, "three steps to run")
    # When the backend (or the broker) restarts, down for four seconds
    server = site.backend if which == "backend" else site.broker
    server.shutdown()
    time.sleep(4)  # the outage itself: nothing to await while the server is down
    server.start_again()
    site.revive_worker()
    # Then the workflow completes with the right result, and no node failed
    assert_completed(wf, result, site.ledger, sum(range(3)))


@pytest.mark.parametrize("site", BROKERS, indirect=True)
def test_a_publish_failing_mid_launch_loses_no_node(site):
    # Given a tick that will publish 6 nodes, and the broker stopping after the second
    ledger = site.ledger.client
    ledger.set("fault:mode", "broker")
    ledger.set("fault:countdown", 3)  # the first node, then two of the group
    wf = Workflow(app=site.app)
    wf.add_celery_canvas(
        chain(site.t.add.si(1, 1), group(site.t.add.s(i) for i in range(6)), site.t.tsum.s())
    )
    result = wf.apply_async()
    wait_for(lambda: ledger.lrange("fault:kills", 0, -1), 30, "the tick's second publish")
    # When the broker stops there, mid-launch, and comes back three seconds later
    site.broker.shutdown()
    ledger.set("fault:broker-down", 1)
    time.sleep(3)  # the outage: longer than Celery's publish retries (about 0.6 s)
    site.broker.start_again()
    site.revive_worker()
    # Then the nodes whose publish failed were launched after the outage: every node ran,
    # and the workflow has the right result
    assert_completed(wf, result, site.ledger, 6 * 2 + sum(range(6)), at_most=2)
    assert site.failed_publishes()  # the fault did happen, and those nodes ran after all


@pytest.mark.parametrize("site", ["redis"], indirect=True)
def test_a_broker_refusing_publishes_loses_no_workflow(site):
    """A broker that refuses publishes but still takes acks (a Redis at maxmemory, or an
    ACL): Celery rejects a task whose retry it cannot publish without requeueing it, which
    would drop the workflow's driver; the processor requeues it instead."""
    # Given a workflow under way
    wf = Workflow(app=site.app)
    wf.add_celery_canvas(steps(site.t, n=4))
    result = wf.apply_async()
    wait_for(lambda: len(site.ledger.entries()) >= 2, 30, "two steps to run")
    # When the broker refuses every publish (LPUSH/RPUSH) for four seconds
    broker = site.broker.client
    broker.acl_setuser(
        "default",
        enabled=True,
        nopass=True,
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-lpush", "-rpush"],
    )
    try:
        wait_for(site.failed_publishes, 30, "a publish to be refused")
        time.sleep(4)  # the outage: the driver's own retry is refused too
    finally:
        broker.acl_setuser(
            "default", enabled=True, nopass=True, keys=["*"], channels=["*"], commands=["+@all"]
        )
    # (Celery's worker exits when the broker refuses to requeue a message: restarted)
    site.revive_worker()
    # Then the workflow completes after it, every node ran
    assert_completed(wf, result, site.ledger, sum(range(3)), at_most=2)
