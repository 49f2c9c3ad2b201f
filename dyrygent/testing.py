"""Run workflows in this process, with no server: for fast, deterministic tests.

The app uses Celery's in-memory broker (``memory://``) and result backend
(``cache+memory://``), has the dyrygent processor registered, and a worker runs in threads of
this process while the context manager is open::

    from dyrygent import Workflow
    from dyrygent.testing import in_process

    def tasks(app):
        @app.task(name="t.add")
        def add(x, y):
            return x + y

    with in_process(tasks) as app:
        wf = Workflow(app=app)
        wf.add_celery_canvas(app.tasks["t.add"].s(1, 2) | app.tasks["t.add"].s(3))
        assert wf.apply_async().get(timeout=10) == 6

Register tasks in ``setup`` (or on an app from :func:`make_app` before
:func:`running_worker`): a worker only knows the tasks registered when it starts.

Stopping a worker takes up to 4 s (Celery's worker loop waits 2 s for a message between two
checks of its state), so start one per test module (a module-scoped fixture), not per test.

Limits, all Celery's: one in-process worker at a time (a worker installs its app's task
registry for the whole process; a second one raises ``ConfigurationError``); the in-memory
broker and result backend are shared by the whole process (each app gets its own default
queue, so apps used one after the other do not take each other's leftover tasks); the
in-memory result backend keeps the latest 5,000 results; and the processor's fence holds
within this process only. Use a real broker and backend for anything that needs more.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable, TypeVar

from celery import Celery
from celery.contrib.testing.worker import start_worker

from dyrygent import register_workflow_processor
from dyrygent.errors import ConfigurationError

__all__ = ["in_process", "make_app", "running_worker", "wait_until"]

T = TypeVar("T")

_running: list[str] = []  # the app of the in-process worker running, if any
_running_lock = threading.Lock()


def make_app(name: str = "dyrygent-testing", **processor_options: Any) -> Celery:
    """A Celery app on the in-memory broker and result backend, with the processor registered.

    ``processor_options`` go to ``register_workflow_processor`` (the defaults here tick
    quickly: ``min_interval=0.01``, ``max_interval=0.2``). The app is not made current, and
    its default queue has a name of its own.
    """
    app = Celery(name, broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.update(
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        # the in-memory transport polls its queues, once a second unless told otherwise
        broker_transport_options={"polling_interval": 0.005},
        # its queues are shared by the whole process: one of our own
        task_default_queue=f"{name}-{uuid.uuid4().hex[:12]}",
    )
    options: dict[str, Any] = {"min_interval": 0.01, "max_interval": 0.2}
    options.update(processor_options)
    register_workflow_processor(app, **options)
    return app


@contextmanager
def running_worker(
    app: Celery, pool: str = "threads", concurrency: int = 4, shutdown_timeout: float = 10
) -> Iterator[Celery]:
    """Run a worker for ``app`` in this process (``pool``: ``"threads"`` or ``"solo"``) while
    the block runs; yields ``app``. Tasks registered after the worker starts are unknown to it.

    Raises ``ConfigurationError`` if another in-process worker is running: Celery's worker
    sets up one app's task registry for the whole process, so a second one would run the
    first app's messages with its own tasks.
    """
    with _running_lock:
        if _running:
            raise ConfigurationError(
                f"running_worker({app.main!r}): the worker of app {_running[0]!r} is still "
                "running in this process, and Celery runs every in-process worker's tasks "
                "from one app; leave its block first (one in-process worker at a time)"
            )
        _running.append(app.main)
    try:
        with start_worker(
            app,
            pool=pool,
            concurrency=concurrency,
            perform_ping_check=False,
            loglevel="WARNING",
            shutdown_timeout=shutdown_timeout,
        ):
            yield app
    finally:
        with _running_lock:
            _running.clear()


@contextmanager
def in_process(
    setup: Callable[[Celery], object] | None = None,
    *,
    name: str = "dyrygent-testing",
    pool: str = "threads",
    concurrency: int = 4,
    **processor_options: Any,
) -> Iterator[Celery]:
    """An app from :func:`make_app`, with ``setup(app)`` called to register tasks, and a
    worker running in this process (:func:`running_worker`) while the block runs."""
    app = make_app(name, **processor_options)
    if setup is not None:
        setup(app)
    with running_worker(app, pool=pool, concurrency=concurrency):
        yield app


def wait_until(
    condition: Callable[[], T | None], timeout: float, what: str, interval: float = 0.01
) -> T:
    """Call ``condition`` until it returns a truthy value, and return that value.

    Raises ``TimeoutError`` naming ``what`` (and the condition's last exception, if it
    raised one) once ``timeout`` seconds have passed. An exception from ``condition`` means
    "not yet".
    """
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = condition()
        except Exception as exc:  # "not yet": reported if the deadline passes
            last_exc = exc
        else:
            if value:
                return value
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"timed out after {timeout}s waiting for {what} (last error: {last_exc!r})"
            )
        time.sleep(interval)
