"""``python -m dyrygent demo``: real workflows through the real processor, no server needed.

By default the broker and result backend live in memory and the worker runs in this process
(threads); ``--broker``/``--backend`` point it at a real Redis, or ``--backend`` at Celery's
database backend (``db+sqlite:///results.db``, needs SQLAlchemy) instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from celery import Celery, chain, chord

from dyrygent import Workflow, register_workflow_processor


def make_app(broker: str, backend: str) -> Celery:
    app = Celery("dyrygent-demo", broker=broker, backend=backend, set_as_current=False)
    app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)
    if broker.startswith("memory://"):
        # the in-memory transport polls its queues, once a second unless told otherwise
        app.conf.broker_transport_options = {"polling_interval": 0.005}
    register_workflow_processor(app, min_interval=0.01, max_interval=0.2)

    @app.task(name="demo.extract")
    def extract() -> list:
        return [{"city": c, "temp_f": f} for c, f in [("Oslo", 41), ("Rome", 68), ("Lima", 77)]]

    @app.task(name="demo.transform")
    def transform(rows: list) -> list:
        return [{"city": r["city"], "temp_c": round((r["temp_f"] - 32) * 5 / 9, 1)} for r in rows]

    @app.task(name="demo.load")
    def load(rows: list) -> str:
        return f"loaded {len(rows)} rows: " + ", ".join(f"{r['city']} {r['temp_c']}C" for r in rows)

    @app.task(name="demo.start")
    def start() -> int:
        return 1

    @app.task(name="demo.work")
    def work(x: int, i: int) -> int:
        return x + i

    @app.task(name="demo.collect")
    def collect(xs: list) -> int:
        return sum(xs)

    @app.task(name="demo.finish")
    def finish(x: int) -> str:
        return f"finished with {x}"

    return app


def watch(result: Any, labels: dict[str, str], out: Any, timeout: float) -> Any:
    """Print each node's state as it changes, then return the workflow's result."""
    seen: dict[str, str] = {}
    t0 = time.monotonic()

    def show() -> None:
        for node_id, state in result.states().items():
            if seen.get(node_id) != state:
                seen[node_id] = state
                print(f"  {time.monotonic() - t0:6.3f}s  {labels[node_id]:<22} {state}", file=out)

    def settled() -> bool:  # the result is written just before the final state commit
        return result.ready() and not {"WAITING", "READY", "LAUNCHED"} & set(seen.values())

    while not settled():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"the demo workflow did not finish in {timeout}s")
        show()
        time.sleep(0.005)  # a display refresh rate, not a wait for the result
    return result.get(timeout=timeout)


def run(app: Celery, out: Any = sys.stdout, timeout: float = 60) -> list:
    t = {name.split(".")[1]: app.tasks[name] for name in app.tasks if name.startswith("demo.")}
    results = []

    print("1. EXTRACT -> TRANSFORM -> LOAD, results flowing between tasks", file=out)
    etl = chain(t["extract"].s(), t["transform"].s(), t["load"].s())
    wf = Workflow(app=app)
    wf.add_celery_canvas(etl)
    labels = {n.id: n.task for n in wf.nodes}
    r = wf.apply_async()
    value = watch(r, labels, out, timeout)
    print(f"  result: {value!r}\n", file=out)
    results.append(value)

    print("2. chain(start, 5 x chord(10 x work, collect), finish): 57 tasks", file=out)
    steps = [t["start"].s()]
    for _ in range(5):
        steps.append(chord([t["work"].s(i) for i in range(10)], t["collect"].s()))
    steps.append(t["finish"].s())
    wf = Workflow(app=app)
    wf.add_celery_canvas(chain(*steps))
    labels = {n.id: f"{n.task}#{k}" for k, n in enumerate(wf.nodes)}
    started = time.monotonic()
    r = wf.apply_async()
    value = watch(r, labels, out, timeout)
    print(
        f"  result: {value!r} ({len(wf.nodes)} tasks in {time.monotonic() - started:.2f}s)",
        file=out,
    )
    results.append(value)
    return results


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
    from celery.contrib.testing.worker import start_worker

    print(f"dyrygent demo: broker {args.broker}, backend {args.backend}, in-process worker\n")
    with start_worker(
        app,
        pool="threads",
        concurrency=4,
        perform_ping_check=False,
        loglevel="WARNING",
        shutdown_timeout=10,
    ):
        run(app)
    return 0
