"""Worker kills: the workflow survives SIGKILL of the worker holding its processor, while it
waits its countdown and mid-tick, on Redis and RabbitMQ, and of one pool child (OOM style).

Each test gets its own queue and its own worker started with DYRYGENT_TEST_FAULTS=1 (see
workerapp._fault_injection), acks_late on every task (the production setting the README asks
for) and a short Redis visibility timeout so restored messages come back within seconds.
"""

from __future__ import annotations

import json

import pytest
from celery import chain, group

from dyrygent import Workflow, WorkflowError
from tests.harness import RabbitVhost, Worker, wait_for
from tests.integration.cluster import Cluster, next_queue


@pytest.fixture(params=["redis", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq), "database"])
def cluster(request, redis_server, ledger):
    """Redis broker and backend; RabbitMQ broker; or Redis broker and Celery's database
    result backend on PostgreSQL."""
    vhost = None
    backend = redis_server.url(7)
    if request.param == "rabbitmq":
        if not RabbitVhost.available():
            pytest.skip("no RabbitMQ server on 127.0.0.1:5672")
        vhost = RabbitVhost()
        broker = vhost.url
    else:
        broker = redis_server.url(6)
    if request.param == "database":
        backend = "db+" + request.getfixturevalue("postgres").url
    ledger.client.delete("fault:countdown", "fault:mode", "fault:always", "fault:kills")
    c = Cluster(broker, backend, redis_server.url(2))
    c.start_worker()
    yield c
    c.stop()
    ledger.client.delete("fault:countdown", "fault:mode", "fault:always", "fault:kills")
    if vhost is not None:
        vhost.delete()


def arm(ledger, after_launches: int, mode: str) -> None:
    ledger.client.set("fault:mode", mode)
    ledger.client.set("fault:countdown", after_launches)


def kills(ledger) -> list[str]:
    return [k.decode() for k in ledger.client.lrange("fault:kills", 0, -1)]


def assert_every_node_ran(wf, ledger, at_most: int) -> None:
    """Every node ran at least once and at most ``at_most`` times, one run of it returned, and
    every run of it started after one run of each of its parents had ended.

    Times are the ledger Redis server's (one clock for every worker); the dependencies are the
    graph's (``wf.freeze()``). A run killed mid-way records no end, so a child must have
    started after the first run of its parent that did end."""
    runs = ledger.runs()
    counts = [runs.get(n.id, 0) for n in wf.nodes]
    over = [e for e in ledger.entries() if runs.get(e[0], 0) > at_most]
    assert all(1 <= c <= at_most for c in counts), (counts, over)
    starts, ends = ledger.starts(), ledger.ends()
    never_ended = [n.id for n in wf.nodes if not ends.get(n.id)]
    assert not never_ended, f"nodes with no run that ended: {never_ended}"
    graph = wf.freeze()
    assert [n.id for n in graph.nodes] == [n.id for n in wf.nodes]
    early = [
        (node.id, parent.id, started, min(ends[parent.id]))
        for node in graph.nodes
        for parent in (graph.nodes[p] for p in node.parents)
        for started in starts[node.id]
        if started <= min(ends[parent.id])
    ]
    assert not early, f"(node, parent, node started, parent first ended) out of order: {early}"


def canvas(t):
    return chain(t.add.si(1, 1), group(t.add.s(i) for i in range(5)), t.tsum.s(), t.add.s(100))


EXPECTED = 5 * 2 + sum(range(5)) + 100  # 120


def test_kill_whole_worker_while_the_processor_waits(cluster, ledger):
    # Given a workflow whose first node takes a while, so the processor waits its countdown
    wf = Workflow(app=cluster.app)
    wf.add_celery_canvas(
        chain(
            cluster.t.sleep_then.s(1, 1.0),
            cluster.t.add.s(1),
            group(cluster.t.add.s(i) for i in range(3)),
            cluster.t.tsum.s(),
        )
    )
    result = wf.apply_async()
    wait_for(lambda: wf.nodes[0].id in ledger.runs(), 20, "the first node to start")
    # When the whole worker is SIGKILLed and another one starts
    cluster.worker.kill()
    cluster.start_worker()
    # Then the workflow completes; every node ran, none more than twice
    assert result.get(timeout=60) == 3 * 2 + sum(range(3))
    assert_every_node_ran(wf, ledger, at_most=2)


@pytest.mark.parametrize("mode", ["worker", "child"])
def test_kill_mid_tick_after_launching_some_nodes(cluster, ledger, mode):
    # Given a kill armed for the moment the group's second node has been published
    arm(ledger, after_launches=3, mode=mode)
    wf = Workflow(app=cluster.app)
    wf.add_celery_canvas(canvas(cluster.t))
    result = wf.apply_async()
    # When the worker (or only its pool child) dies mid-tick
    wait_for(lambda: kills(ledger), 30, "the injected kill")
    if mode == "worker":
        wait_for(lambda: cluster.worker.proc.poll() is not None, 10, "the worker to die")
        cluster.start_worker()
    # Then the workflow completes; nodes launched in the killed tick ran at most twice
    assert result.get(timeout=60) == EXPECTED
    assert kills(ledger) == [mode]
    assert_every_node_ran(wf, ledger, at_most=2)


def test_a_processor_message_that_kills_its_worker_every_time_ends_in_error(cluster, ledger):
    # Given a workflow every one of whose ticks kills the pool child after a launch
    wf = Workflow(app=cluster.app)
    wf.add_celery_canvas(chain(cluster.t.add.si(1, 1), cluster.t.add.s(1)))
    ledger.client.set("fault:always", wf.id)
    result = wf.apply_async()
    # Then after a bounded number of attempts the workflow ends in ERROR saying why
    with pytest.raises(WorkflowError, match=r"interrupted 5 times.*max_attempts=5"):
        result.get(timeout=90)
    assert len(kills(ledger)) == 5
    ledger.client.delete("fault:always")
    # And the worker still runs the next workflow
    wf2 = Workflow(app=cluster.app)
    wf2.add_celery_canvas(cluster.t.add.si(2, 2))
    assert wf2.apply_async().get(timeout=30) == 4


@pytest.mark.parametrize("first_node_runs", [4.0, 1.5])
def test_a_driver_killed_with_its_worker_is_replaced_before_the_visibility_timeout(
    redis_server, ledger, first_node_runs
):
    """On a Redis broker with a production visibility timeout (an hour), the message of a
    driver whose whole worker was SIGKILLed mid-tick comes back only after that hour. A node
    ending after the lease (2 s here) takes the dead hold over and re-arms the driver; one
    ending before it finds the hold busy and schedules a wake-up for just past the lease."""
    import workerapp

    queue = next_queue()
    env = {
        "DYRYGENT_TEST_BROKER": redis_server.url(14),
        "DYRYGENT_TEST_BACKEND": redis_server.url(15),
        "DYRYGENT_TEST_LEDGER": redis_server.url(2),
        "DYRYGENT_TEST_QUEUE": queue,
        "DYRYGENT_TEST_PROCESSOR_QUEUE": queue + "-processor",
        "DYRYGENT_TEST_ACKS_LATE": "1",
        "DYRYGENT_TEST_VISIBILITY": "3600",
    }
    app = workerapp.make_app(
        redis_server.url(14),
        redis_server.url(15),
        name=f"c-{queue}",
        queue=queue,
        visibility_timeout=3600,
        acks_late=True,
        processor_queue=queue + "-processor",
    )
    t = workerapp.Tasks(app)
    ledger.client.delete("fault:kills", "fault:kill-driver")
    # Given one worker for nodes, and one for processor messages that dies (whole process
    # group) at the workflow's first driver tick, while the first node runs
    nodes = Worker(env, name="nodes")
    drivers = [
        Worker(
            {**env, "DYRYGENT_TEST_FAULTS": "1"}, name="driver0", extra=("-Q", queue + "-processor")
        )
    ]
    try:
        nodes.wait_ready(app)
        wf = Workflow(app=app)
        wf.add_celery_canvas(
            chain(
                t.sleep_then.s(1, first_node_runs),
                t.add.s(1),
                group(t.add.s(i) for i in range(3)),
                t.tsum.s(),
            )
        )
        ledger.client.set("fault:kill-driver", wf.id)
        result = wf.apply_async()
        wait_for(lambda: kills(ledger) == ["driver"], 30, "the driver's worker to be killed")
        wait_for(lambda: drivers[0].proc.poll() is not None, 10, "the worker to exit")
        # When a supervisor restarts the processor worker (the old driver message stays
        # unacked in Redis for an hour)
        ledger.client.delete("fault:kill-driver")
        drivers.append(Worker(env, name="driver1", extra=("-Q", queue + "-processor")))
        # Then the workflow completes well before that, every node once
        assert result.get(timeout=60) == 3 * 2 + sum(range(3))
        assert_every_node_ran(wf, ledger, at_most=1)
    finally:
        nodes.stop()
        for w in drivers:
            w.stop()
        ledger.client.delete("fault:kills", "fault:kill-driver")


def test_an_idle_driver_backs_off(redis_server, ledger):
    """While the wake-ups do all the work, the backup driver's countdown doubles from
    max_interval (0.5 s here) up to idle_interval (2 s here) instead of ticking every 0.5 s."""
    c = Cluster(redis_server.url(4), redis_server.url(9), redis_server.url(2))
    try:
        c.start_worker()
        # Given a workflow whose first node runs for 5 s
        wf = Workflow(app=c.app)
        wf.add_celery_canvas(chain(c.t.sleep_then.s(1, 5.0), c.t.add.s(1)))
        assert wf.apply_async().get(timeout=30) == 2
    finally:
        c.stop()
    # Then its driver ticked a handful of times, each finding nothing, and said so to the next
    drivers = [json.loads(x)[1] for x in ledger.client.lrange("processor", 0, -1)]
    drivers = [args for args in drivers if args[0] == wf.id and args[1] is not None]
    idles = [args[2] if len(args) > 2 else 0 for args in drivers]
    # (0.5 s, then 1 s, 2 s, 2 s ...: every 0.5 s, it would have been 10 ticks)
    assert 3 <= len(drivers) <= 5 and idles == list(range(len(idles))), drivers


@pytest.mark.parametrize("mode", ["worker", "child"])
def test_a_fan_out_killed_mid_expansion_runs_each_item_at_least_once_at_most_twice(
    cluster, ledger, mode
):
    from dyrygent import expand

    # Given a fan-out over 6 items, and a kill armed after its third expanded node is
    # published (the expansion is stored; the tick dies before its commit)
    arm(ledger, after_launches=3, mode=mode)
    items = list(range(6))
    wf = Workflow(app=cluster.app)
    wf.add_celery_canvas(
        chain(cluster.t.identity.si(items), expand(cluster.t.add.s(10)), cluster.t.tsum.s())
    )
    result = wf.apply_async()
    wait_for(lambda: kills(ledger), 30, "the injected kill")
    if mode == "worker":
        wait_for(lambda: cluster.worker.proc.poll() is not None, 10, "the worker to die")
        cluster.start_worker()
    # Then the workflow completes with every item's result, once each
    assert result.get(timeout=60) == sum(i + 10 for i in items)
    # and every item ran at least once and at most twice, under one id each
    runs = ledger.runs()
    by_item: dict[int, set[str]] = {}
    for e in ledger.entries():
        if e[1] == "t.add":
            by_item.setdefault(e[2][0], set()).add(e[0])
    assert sorted(by_item) == items
    assert all(len(ids) == 1 for ids in by_item.values()), by_item
    assert all(1 <= runs[next(iter(ids))] <= 2 for ids in by_item.values())
