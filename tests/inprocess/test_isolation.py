"""dyrygent.testing: apps used one after the other stay apart; two workers at once are refused.

These tests start their own in-process workers, so they do not use the module-wide ``app``.
"""

from __future__ import annotations

from typing import Callable

import pytest
from celery import Celery

from dyrygent import ConfigurationError, Workflow
from dyrygent.testing import in_process, make_app

pytestmark = pytest.mark.timeout(30)


def answering(tag: str) -> Callable[[Celery], None]:
    """A setup registering the task ``t.which``, which returns ``tag``."""

    def setup(app: Celery) -> None:
        @app.task(name="t.which", shared=False)
        def which() -> str:
            return tag

    return setup


def which(app: Celery) -> object:
    wf = Workflow(app=app)
    wf.add_celery_canvas(app.tasks["t.which"].si())
    return wf.apply_async().get(timeout=10)


def waiting_in(app: Celery) -> int:
    """How many messages wait in ``app``'s default queue."""
    with app.connection_for_write() as conn:
        declared = conn.default_channel.queue_declare(app.conf.task_default_queue, passive=True)
        return int(declared.message_count)


def test_an_app_runs_its_own_tasks_and_not_another_apps_waiting_ones() -> None:
    # Given an app whose task was published with no worker running (it waits in the
    # in-memory broker, which the whole process shares)
    idle = make_app("idle")
    answering("idle")(idle)
    idle.tasks["t.which"].si().apply_async()
    assert waiting_in(idle) == 1
    # When another app runs a workflow of its own task "t.which" (after the module-wide app
    # of test_harness.py, whose worker has stopped)
    with in_process(answering("busy"), name="busy") as busy:
        value = which(busy)
    # Then the workflow ran the busy app's task, and the idle app's message is still waiting
    assert value == "busy"
    assert waiting_in(idle) == 1


def test_a_second_in_process_worker_at_once_is_refused() -> None:
    with in_process(answering("first"), name="first") as first:
        # Given an in-process worker running
        # When another one starts, Then it is refused, naming both apps and the fix
        with pytest.raises(
            ConfigurationError,
            match=r"running_worker\('second'\): the worker of app 'first' is still running"
            r".*one in-process worker at a time",
        ):
            with in_process(answering("second"), name="second"):
                pass  # pragma: no cover - never reached
        # And the running one still runs workflows
        assert which(first) == "first"
