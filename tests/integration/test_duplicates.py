"""Duplicate deliveries of the processor message (README, Reliability, item 1): kombu's Redis
transport re-delivers a message its worker holds as an ETA task for longer than the
visibility timeout, and every copy used to re-enqueue itself (1, 3, 9, 27 processors). Here
the processor's countdown (3 s) is three times the visibility timeout (1 s): copies must
exit as stale, the processor runs stay bounded, and no node is launched twice.
"""

from __future__ import annotations

import json
import os
from collections import Counter

from celery import chain, group

from dyrygent import Workflow
from tests.harness import Worker


def test_redelivered_processor_copies_exit_and_launch_nothing(redis_server, ledger):
    import workerapp

    queue = f"dups-{os.getpid()}"
    env = {
        "DYRYGENT_TEST_BROKER": redis_server.url(12),
        "DYRYGENT_TEST_BACKEND": redis_server.url(13),
        "DYRYGENT_TEST_LEDGER": redis_server.url(2),
        "DYRYGENT_TEST_QUEUE": queue,
        "DYRYGENT_TEST_FAULTS": "1",
        "DYRYGENT_TEST_ACKS_LATE": "0",
        "DYRYGENT_TEST_VISIBILITY": "1",
        "DYRYGENT_TEST_MAX_INTERVAL": "3",
    }
    app = workerapp.make_app(
        redis_server.url(12),
        redis_server.url(13),
        name=f"c-{queue}",
        queue=queue,
        visibility_timeout=1,
        acks_late=False,
        max_interval=3,
    )
    t = workerapp.Tasks(app)
    ledger.client.delete("processor")
    worker = Worker(env, name="dups")
    try:
        worker.wait_ready(app)
        # Given a workflow of about 7 s whose processor messages wait 3 s each
        wf = Workflow(app=app)
        wf.add_celery_canvas(
            chain(
                t.sleep_then.s(0, 1.0),
                *[t.sleep_then.s(1.0)] * 5,
                group(t.add.s(i) for i in range(3)),
                t.tsum.s(),
            )
        )
        result = wf.apply_async()
        # Then it completes, every node ran exactly once
        assert result.get(timeout=60) == sum(range(3))
        runs = ledger.runs()
        assert [runs.get(n.id, 0) for n in wf.nodes] == [1] * len(wf.nodes)
    finally:
        worker.stop()
    # And copies of processor messages did arrive (the fault happened), all but one of
    # each exited without ticking, and the processor runs stayed bounded
    procs = [json.loads(x) for x in ledger.client.lrange("processor", 0, -1)]
    copies = Counter(p[0] for p in procs)
    assert max(copies.values()) >= 2, procs
    ticking = {"'running'", "'succeeded'", "'failed'", "'error'"}
    ticked = Counter(p[0] for p in procs if p[2] in ticking)
    assert set(ticked.values()) == {1}, procs
    assert len(procs) <= 30, procs
