"""One measured run, in its own process: build a shape, submit it with one runner, wait.

    python -m benchmarks.client RUNNER SHAPE --timeout S

RUNNER is ``native``, ``celery-dyrygent`` or ``dyrygent``; SHAPE a :func:`benchmarks.shapes.parse`
spec. The broker, backend (Redis or Celery's database backend) and stats Redis come from the
environment (see benchapp). Prints one JSON line: status (ok, timeout, error), wall time from the
first signature built to the result seen, and the phases. Run by :mod:`benchmarks.run`, which
can kill it by pid when a submission itself outlasts the timeout.

``--client-cost`` measures instead the client's build and encode cost without publishing: time
(plain) and peak traced memory (a second pass under tracemalloc).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from typing import Any, Callable

RUNNERS = ("native", "celery-dyrygent", "dyrygent")


def _leaf_ids(result: Any) -> list[str]:
    from celery.result import GroupResult

    if isinstance(result, GroupResult):
        return [i for r in result.results for i in _leaf_ids(r)]
    return [result.id]


def statuses(backend: Any, ids: list[str]) -> list[str | None]:
    """The stored status of each id (None without a meta): one GET or MGET on Redis, one
    SELECT ... IN on Celery's database backend."""
    if type(backend).__name__ == "DatabaseBackend":
        model = backend.task_cls
        session = backend.ResultSession()
        try:
            found = dict(
                session.query(model.task_id, model.status).filter(model.task_id.in_(ids)).all()
            )
        finally:
            session.close()
        return [found.get(i) for i in ids]
    keys = [backend.get_key_for_task(i) for i in ids]
    values = [backend.client.get(keys[0])] if len(keys) == 1 else backend.client.mget(keys)
    return [backend.decode_result(v)["status"] if v is not None else None for v in values]


def wait_ids(app: Any, ids: list[str], deadline: float, interval: float = 0.01) -> str:
    """Poll the backend until every id has a ready state: the newest id with one read, the rest
    with batched reads once it is done (:func:`statuses`). Returns ok, timeout or error."""
    from celery import states

    backend = app.backend
    pending = list(ids)
    while pending:
        if time.perf_counter() > deadline:
            return "timeout"
        if statuses(backend, pending[-1:])[0] not in states.READY_STATES:
            time.sleep(interval)
            continue
        still = []
        for start in range(0, len(pending), 2000):
            chunk = pending[start : start + 2000]
            for task_id, status in zip(chunk, statuses(backend, chunk)):
                if status is None or status not in states.READY_STATES:
                    still.append(task_id)
                elif status != states.SUCCESS:
                    return "error"
        pending = still
        if pending:
            time.sleep(interval)
    return "ok"


def wait_one(result: Any, deadline: float) -> str:
    from celery.exceptions import TimeoutError as CeleryTimeout

    try:
        result.get(
            timeout=max(0.01, deadline - time.perf_counter()),
            interval=0.01,
            disable_sync_subtasks=False,
        )
    except CeleryTimeout:
        return "timeout"
    return "ok"


def submitter(runner: str, app: Any) -> Callable[[Any], tuple[list[Any], list[str]]]:
    """The runner's submit: canvas -> (results to wait on, workflow ids that are not nodes)."""
    if runner == "native":

        def native(canvas: Any) -> tuple[list[Any], list[str]]:
            return [canvas.apply_async()], []

        return native
    if runner == "celery-dyrygent":
        from celery_dyrygent.workflows import Workflow as CDWorkflow

        def cd(canvas: Any) -> tuple[list[Any], list[str]]:
            wf = CDWorkflow()
            wf.add_celery_canvas(canvas)
            r = wf.apply_async()
            return [r], [r.id]

        return cd
    if runner == "dyrygent":
        from dyrygent import Workflow

        def dy(canvas: Any) -> tuple[list[Any], list[str]]:
            wf = Workflow(app=app)
            wf.add_celery_canvas(canvas)
            r = wf.apply_async()
            return [r], [r.id]

        return dy
    raise SystemExit(f"unknown runner {runner!r}: one of {', '.join(RUNNERS)}")


def run(runner: str, spec: str, timeout: float) -> dict[str, Any]:
    from benchmarks import benchapp, shapes

    app = benchapp.app
    shape = shapes.parse(spec)
    if hasattr(app.backend, "session_manager"):
        # Celery's database backend opens a new connection for every read in a process that
        # did not fork (NullPool): one pooled engine instead, or each 10 ms poll below would
        # cost a PostgreSQL backend start, CPU taken from the worker on a small machine.
        app.backend.session_manager.forked = True

    def s() -> Any:
        return app.signature(benchapp.NOOP)

    submit = submitter(runner, app)
    gc.collect()
    t0 = time.perf_counter()
    deadline = t0 + timeout
    canvas = shape.build(s)
    t_built = time.perf_counter()
    results: list[Any] = []
    wf_ids: list[str] = []
    if shape.independent:
        if runner != "native":
            raise SystemExit("the floor shapes are plain tasks: run them with 'native'")
        results = [sig.apply_async() for sig in canvas]
    else:
        for c in canvas if shape.many else [canvas]:
            r, w = submit(c)
            results += r
            wf_ids += w
    t_sub = time.perf_counter()
    ids = [i for r in results for i in _leaf_ids(r)]
    if len(results) == 1 and len(ids) == 1:
        status = wait_one(results[0], deadline)
    else:
        status = wait_ids(app, ids, deadline)
    t_done = time.perf_counter()
    return {
        "status": status,
        "wall": t_done - t0,
        "build": t_built - t0,
        "submit": t_sub - t_built,
        "wf_ids": wf_ids,
        "tasks": shape.tasks,
        "cpu": time.process_time(),
    }


def client_cost(runner: str, spec: str) -> dict[str, Any]:
    """Build the shape's canvas, then the runner's payload, without publishing.

    ``canvas_s``: building the canvas objects; ``seconds``: turning them into what the runner
    publishes (dyrygent: add_celery_canvas + freeze + encode_graph; celery-dyrygent:
    add_celery_canvas + freeze + JSON of the processor's kwargs; native: freeze). Times from
    a plain pass; ``peak_mb`` is tracemalloc's peak during the second step in a traced pass,
    the canvas already built (``canvas_mb``: the canvas itself).
    """
    from benchmarks import benchapp, shapes

    app = benchapp.app
    shape = shapes.parse(spec)

    def s() -> Any:
        return app.signature(benchapp.NOOP)

    def canvas() -> list[Any]:
        c = shape.build(s)
        return c if shape.many else [c]

    def payload(canvases: list[Any]) -> int:
        size = 0
        for c in canvases:
            if runner == "dyrygent":
                from dyrygent import Workflow
                from dyrygent.core.codec import encode_graph

                wf = Workflow(app=app)
                wf.add_celery_canvas(c)
                size += len(encode_graph(wf.freeze()))
            elif runner == "celery-dyrygent":
                from celery_dyrygent.workflows import Workflow as CDWorkflow
                from kombu.utils.json import dumps

                cwf = CDWorkflow()
                cwf.add_celery_canvas(c)
                size += len(dumps(cwf.freeze().kwargs))
            else:  # native: the frozen canvas (publishing serializes it further)
                c.freeze()
        return size

    if shape.independent:
        return {"status": "skipped"}
    payload(canvas())  # warm imports and caches
    gc.collect()
    t0 = time.perf_counter()
    cs = canvas()
    t1 = time.perf_counter()
    size = payload(cs)
    t2 = time.perf_counter()
    del cs
    from benchmarks.instrument import traced_memory

    canvas_mb, peak_mb = traced_memory(canvas, payload)
    return {
        "status": "ok",
        "canvas_s": t1 - t0,
        "seconds": t2 - t1,
        "canvas_mb": canvas_mb,
        "peak_mb": peak_mb,
        "payload": size,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runner", choices=RUNNERS)
    p.add_argument("shape")
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("--client-cost", action="store_true")
    a = p.parse_args(argv)
    from benchmarks import instrument

    if a.client_cost:
        out = client_cost(a.runner, a.shape)
    else:
        if os.environ.get("BENCH_STATS_URL"):
            instrument.install(os.environ["BENCH_STATS_URL"], role="client")
        try:
            out = run(a.runner, a.shape, a.timeout)
        except Exception as exc:  # reported in the table, not a crash of the harness
            out = {"status": "error", "error": f"{type(exc).__name__}: {exc}"[:300]}
        instrument.flush()
    print(json.dumps(out), flush=True)
    sys.stdout.flush()
    os._exit(0)  # skip Celery's atexit hooks (pools, result consumer threads)


if __name__ == "__main__":
    sys.exit(main())
