"""Shared by the compat tests: a tasks app, the seed workflows, both libraries' builds, and
an in-process ledger of task runs."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery, chain, chord
from celery_dyrygent.tasks import register_workflow_processor as cd_register
from celery_dyrygent.workflows import Workflow as CDWorkflow
from kombu.utils.json import dumps, loads

from benchmarks.shapes import NESTED23, chain_chords_between
from dyrygent.tasks import register_workflow_processor
from dyrygent.testing import running_worker

SEED_57 = chain_chords_between(5, 10)
SEED_23 = NESTED23


class Ledger:
    """Every run of a recorded task in this process: task id -> [(args, kwargs, start, end)],
    times from one clock (time.monotonic)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.runs: dict[str, list[tuple[list[Any], dict[str, Any], float, float]]] = {}

    def record(self, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any], start: float):
        with self.lock:
            self.runs.setdefault(task_id, []).append((list(args), kwargs, start, time.monotonic()))

    def clear(self) -> None:
        with self.lock:
            self.runs.clear()


LEDGER = Ledger()


class NodeFailed(Exception):
    pass


def register_tasks(app: Celery) -> None:
    """``t.notify(x)`` (celery-dyrygent README style: ignores any parent), ``t.rec(*a, **k)``
    (records its run and returns its args) and ``t.fail``."""

    @app.task(name="t.notify", bind=True, shared=False)
    def notify(self: Any, x: Any) -> str:
        LEDGER.record(self.request.id, (x,), {}, time.monotonic())
        return f"notified: {x}"

    @app.task(name="t.rec", bind=True, shared=False)
    def rec(self: Any, *args: Any, **kwargs: Any) -> list[Any]:
        start = time.monotonic()
        time.sleep(0.002)
        LEDGER.record(self.request.id, args, kwargs, start)
        return list(args)

    @app.task(name="t.fail", bind=True, shared=False)
    def fail(self: Any, *args: Any) -> None:
        LEDGER.record(self.request.id, args, {}, time.monotonic())
        raise NodeFailed(f"failed on purpose with {list(args)}")


def make_app(name: str = "compat", **options: Any) -> Celery:
    """An in-memory app with the tasks and dyrygent.tasks' processor (adoption included)."""
    app = Celery(name, broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.update(
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        broker_transport_options={"polling_interval": 0.005},
        task_default_queue=f"{name}-{uuid.uuid4().hex[:12]}",
    )
    register_tasks(app)
    register_workflow_processor(
        app, adopt_celery_dyrygent=True, min_interval=0.01, max_interval=0.2, **options
    )
    return app


@contextmanager
def compat_app() -> Iterator[Celery]:
    app = make_app()
    with running_worker(app):
        yield app


def seed_canvases(app: Celery) -> dict[str, Callable[[], Any]]:
    """The canvases the tests run both ways, by name: celery-dyrygent's README example
    (``chain | chord``) and the seed's 57-task and 23-task workflows, on ``t.rec`` calls
    with distinct arguments."""
    rec = app.tasks["t.rec"]
    counter = iter(range(10_000))

    def s() -> Any:
        return rec.s(next(counter), tag="x")

    return {
        "readme": lambda: chain(s(), s()) | chord([s() for _ in range(3)], s()),
        "seed57": lambda: SEED_57.build(s),
        "seed23": lambda: SEED_23.build(s),
    }


def both(canvas: Any, dy_workflow: Any) -> tuple[CDWorkflow, Any]:
    """``canvas`` added to a celery-dyrygent Workflow and to ``dy_workflow`` (same ids:
    celery-dyrygent freezes each signature first, dyrygent keeps frozen ids)."""
    cd = CDWorkflow()
    cd.add_celery_canvas(canvas)
    dy_workflow.add_celery_canvas(canvas)
    return cd, dy_workflow


def dependency_map(nodes: dict[str, Any]) -> dict[str, set[str]]:
    return {node_id: set(node.dependencies) for node_id, node in nodes.items()}


#: A client app with celery-dyrygent's own processor: it builds celery-dyrygent's messages.
CD_APP = Celery("cd-client", set_as_current=False)
register_tasks(CD_APP)
cd_register(CD_APP, shared=False)  # (its default, shared, reaches every app)


def message(
    build: str = "seed23", ticks: int = 0, fail_first: bool = False, options: dict | None = None
):
    """(workflow id, workflow_dict as the broker carries it, the celery-dyrygent Workflow)
    after ``ticks`` simulated ticks (the last wave running, earlier ones finished);
    ``options`` are its processor's (default: its own queue)."""
    cd = CDWorkflow(options={"queue": "wf"} if options is None else options)
    cd.add_celery_canvas(seed_canvases(CD_APP)[build]())
    cd.custom_payload = {"job": 42}
    first = next(iter(cd.nodes.values()))
    first.custom_payload["user_id"] = 7
    cd.set_retry_policy("random", 2, 6)
    for _ in range(ticks):
        cd.simulate_tick()
    if fail_first:
        cd.finished[first.id] = False
    cd.tasks_options = {"priority": 4}
    sig = cd.freeze()
    return sig.id, loads(dumps(sig.kwargs["workflow_dict"])), cd
