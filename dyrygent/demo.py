"""``python -m dyrygent demo``: real workflows through the real processor, no server needed.

By default the broker and result backend live in memory and the worker runs in this process
(threads); ``--broker``/``--backend`` point it at a real Redis, or ``--backend`` at Celery's
database backend (``db+sqlite:///results.db``, needs SQLAlchemy) instead. Each workflow is
shown live as ``celery -A proj dyrygent show ID --watch`` shows it (a progress bar with rich
in a terminal, else a line per change), then the states its nodes went through.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from celery import Celery, chain, chord

from dyrygent import Workflow, register_workflow_processor
from dyrygent.cli import source
from dyrygent.cli.live import watch
from dyrygent.cli.source import EventView


def make_app(broker: str, backend: str) -> Celery:
    app = Celery("dyrygent-demo", broker=broker, backend=backend, set_as_current=False)
    app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)
    if broker.startswith("memory://"):
        # the in-memory transport polls its queues, once a second unless told otherwise
        app.conf.broker_transport_options = {"polling_interval": 0.005}
    register_workflow_processor(app, min_interval=0.01, max_interval=0.2)

    @app.task(name="demo.extract")
    def extract() -> list[Any]:
        return [{"city": c, "temp_f": f} for c, f in [("Oslo", 41), ("Rome", 68), ("Lima", 77)]]

    @app.task(name="demo.transform")
    def transform(rows: list[Any]) -> list[Any]:
        return [{"city": r["city"], "temp_c": round((r["temp_f"] - 32) * 5 / 9, 1)} for r in rows]

    @app.task(name="demo.load")
    def load(rows: list[Any]) -> str:
        return f"loaded {len(rows)} rows: " + ", ".join(f"{r['city']} {r['temp_c']}C" for r in rows)

    @app.task(name="demo.start")
    def start() -> int:
        return 1

    @app.task(name="demo.work")
    def work(x: int, i: int) -> int:
        return x + i

    @app.task(name="demo.collect")
    def collect(xs: list[Any]) -> int:
        return sum(xs)

    @app.task(name="demo.finish")
    def finish(x: int) -> str:
        return f"finished with {x}"

    return app


def _paths(events: list[EventView], nodes: int) -> str:
    """Each sequence of states the nodes went through, with how many nodes took it."""
    seq: dict[str, list[str]] = {}
    for e in events:
        seq.setdefault(e.node, [e.old]).append(e.new)
    paths = Counter(" -> ".join(states) for states in seq.values())
    paths.update({"WAITING": nodes - len(seq)} if nodes > len(seq) else {})
    return "\n".join(f"    {path}  ({n} nodes)" for path, n in paths.most_common())


def follow(app: Celery, result: Any, out: IO[str], timeout: float) -> Any:
    """Show the workflow live (as ``show --watch`` does) until it ends, then the states its
    nodes went through; returns its result."""
    live = source.result_of(app, result.id)
    watch(lambda: source.view(live), out, interval=0.02, timeout=timeout)
    value = result.get(timeout=timeout)
    v = source.view(live)
    print(f"  states the nodes went through:\n{_paths(source.events(live), v.total)}", file=out)
    return value


def run(app: Celery, out: IO[str] = sys.stdout, timeout: float = 60) -> list[Any]:
    t = {name.split(".")[1]: app.tasks[name] for name in app.tasks if name.startswith("demo.")}
    results = []

    print("1. EXTRACT -> TRANSFORM -> LOAD, results flowing between tasks", file=out)
    etl = chain(t["extract"].s(), t["transform"].s(), t["load"].s())
    wf = Workflow(app=app)
    wf.add_celery_canvas(etl)
    value = follow(app, wf.apply_async(), out, timeout)
    print(f"  result: {value!r}\n", file=out)
    results.append(value)

    print("2. chain(start, 5 x chord(10 x work, collect), finish): 57 tasks", file=out)
    steps = [t["start"].s()]
    for _ in range(5):
        steps.append(chord([t["work"].s(i) for i in range(10)], t["collect"].s()))
    steps.append(t["finish"].s())
    wf = Workflow(app=app)
    wf.add_celery_canvas(chain(*steps))
    started = time.monotonic()
    value = follow(app, wf.apply_async(), out, timeout)
    print(
        f"  result: {value!r} ({len(wf.nodes)} tasks in {time.monotonic() - started:.2f}s)",
        file=out,
    )
    results.append(value)
    print(STEER.format(id=wf.id), file=out)
    return results


STEER = """
Watch and steer workflows from a shell (your app in proj.py, with a Redis or database
result backend; this demo's memory backend is private to this process):
  celery -A proj dyrygent ls --state RUNNING
  celery -A proj dyrygent show {id} --watch
  celery -A proj dyrygent history {id}
  celery -A proj dyrygent graph {id} --format svg -o workflow.svg
  celery -A proj dyrygent cancel {id}
  celery -A proj dyrygent retry {id} --wait
(or python -m dyrygent COMMAND ... -A proj; --help lists the options)"""


@contextmanager
def in_process_worker(app: Celery) -> Iterator[None]:
    """A thread-pool worker for ``app`` in this process while the block runs.

    On exit the worker is told to stop and not waited for: its consumer waits up to 2 s for
    the in-memory broker, and Celery's synloop waits once more after a stop request (it
    drains again in a ``finally``), so joining it kept the demo alive ~4 s after its last
    line. Its thread is a daemon; the pool's threads end with the interpreter.
    """
    from celery.contrib.testing.worker import TestWorkController, setup_app_for_worker
    from celery.result import _set_task_join_will_block
    from celery.worker import state

    setup_app_for_worker(app, "WARNING", None)
    worker = TestWorkController(
        app=app,
        concurrency=4,
        hostname=f"demo-{os.getpid()}@localhost",
        pool="threads",
        loglevel="WARNING",
        logfile=None,
        ready_callback=None,
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
    )
    thread = threading.Thread(target=worker.start, name="dyrygent-demo-worker", daemon=True)
    thread.start()
    worker.ensure_started()
    _set_task_join_will_block(False)  # this thread is a client, not a task (as start_worker)
    try:
        yield
    finally:
        state.should_terminate = 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dyrygent demo", description=__doc__)
    parser.add_argument(
        "--broker", default="memory://localhost/", help="broker URL (default: in memory)"
    )
    parser.add_argument(
        "--backend",
        default="cache+memory://",
        help="result backend URL (default: in memory; redis://..., "
        "db+sqlite:///results.db, db+postgresql://...)",
    )
    args = parser.parse_args(argv)
    app = make_app(args.broker, args.backend)
    print(f"dyrygent demo: broker {args.broker}, backend {args.backend}, in-process worker\n")
    with in_process_worker(app):
        run(app)
    return 0
