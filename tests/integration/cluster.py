"""A client app and a restartable fault-injecting worker on one queue, for the fault tests.

The worker runs with DYRYGENT_TEST_FAULTS=1 (see workerapp._fault_injection), acks_late on
every task (the production setting the README asks for) and a short Redis visibility timeout
so restored messages come back within seconds.
"""

from __future__ import annotations

import itertools
import os

from tests.harness import Worker

VISIBILITY = 3
_queues = itertools.count()


def next_queue() -> str:
    """A queue name no other test of this process uses."""
    return f"faults-{os.getpid()}-{next(_queues)}"


class Cluster:
    """A client app and a restartable fault-injecting worker on one queue."""

    def __init__(self, broker: str, backend: str, ledger_url: str) -> None:
        import workerapp

        self.queue = next_queue()
        self.env = {
            "DYRYGENT_TEST_BROKER": broker,
            "DYRYGENT_TEST_BACKEND": backend,
            "DYRYGENT_TEST_LEDGER": ledger_url,
            "DYRYGENT_TEST_QUEUE": self.queue,
            "DYRYGENT_TEST_FAULTS": "1",
            "DYRYGENT_TEST_ACKS_LATE": "1",
            "DYRYGENT_TEST_VISIBILITY": str(VISIBILITY),
        }
        self.app = workerapp.make_app(
            broker,
            backend,
            name=f"client-{self.queue}",
            queue=self.queue,
            visibility_timeout=VISIBILITY,
            acks_late=True,
        )
        self.t = workerapp.Tasks(self.app)
        self.worker: Worker | None = None
        self.workers: list[Worker] = []

    def start_worker(self) -> Worker:
        self.worker = Worker(self.env, name=f"fault{len(self.workers)}")
        self.workers.append(self.worker)
        self.worker.wait_ready(self.app)
        return self.worker

    def stop(self) -> None:
        for w in self.workers:
            w.stop()
