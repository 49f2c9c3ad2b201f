"""The Celery app of the definitions tests: director-style tasks (``def t(*args, **kwargs)``,
registered by exact name) and dyrygent, configured from the environment as workerapp is.

Each task appends ``[task_id, name, args, kwargs, pid, time, routing_key]`` to the ledger.
``DYRYGENT_TEST_BEAT=1`` turns on the automatic beat schedule (``dyrygent_beat``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import redis
from celery import Celery

from dyrygent import register_workflow_processor

HERE = Path(__file__).resolve().parent
WORKFLOWS = HERE / "definitions" / "workflows.yml"
_ledger = None


def _led():
    global _ledger
    if _ledger is None:
        _ledger = redis.Redis.from_url(os.environ["DYRYGENT_TEST_LEDGER"])
    return _ledger


def record(task, args, kwargs):
    info = task.request.delivery_info or {}
    _led().rpush(
        "ledger",
        json.dumps(
            [
                task.request.id,
                task.name,
                list(args),
                kwargs,
                os.getpid(),
                time.time(),
                info.get("routing_key"),
            ],
            default=repr,
        ),
    )


def make_app(broker: str, backend: str, name: str = "defsapp") -> Celery:
    """The app with the director-style tasks, dyrygent and the test definitions."""
    app = Celery(name, broker=broker, backend=backend)
    app.conf.update(
        broker_connection_retry_on_startup=True,
        result_expires=3600,
        worker_hijack_root_logger=False,
        task_track_started=True,
        dyrygent_definitions=str(WORKFLOWS),
        dyrygent_beat=os.environ.get("DYRYGENT_TEST_BEAT") == "1",
        beat_max_loop_interval=0.2,
    )
    register_workflow_processor(app, min_interval=0.01, max_interval=0.5, idle_interval=2)

    def task(fn):
        def run(self, *args, **kwargs):
            record(self, args, kwargs)
            return fn(*args, **kwargs)

        run.__name__ = fn.__name__
        return app.task(name=fn.__name__, bind=True, shared=False)(run)

    @task
    def EXTRACT(*args, **kwargs):
        return 10

    @task
    def TRANSFORM(*args, **kwargs):
        return args[0] * 2

    @task
    def LOAD(*args, **kwargs):
        return args[0] + 1

    @task
    def NUMBER(*args, **kwargs):
        return kwargs.get("n", kwargs["payload"].get("n", 1))

    @task
    def ITEMS(*args, **kwargs):
        return kwargs["payload"].get("items", [1, 2, 3])

    @task
    def ADD(*args, **kwargs):
        return sum(args[0])

    @task
    def ECHO(*args, **kwargs):
        return list(args)

    @task
    def ERROR(*args, **kwargs):
        raise ValueError("boom from ERROR")

    @task
    def SLOW(*args, **kwargs):
        time.sleep(kwargs["payload"].get("sleep", 2))  # the work itself takes this long
        return "slow"

    @task
    def SUCCESS_HOOK(*args, **kwargs):
        return "success hook"

    @task
    def FAILURE_HOOK(*args, **kwargs):
        return "failure hook"

    @app.task(name="t.ping", shared=False)
    def ping():
        return "pong"

    return app


if os.environ.get("DYRYGENT_TEST_BROKER"):
    app = make_app(os.environ["DYRYGENT_TEST_BROKER"], os.environ["DYRYGENT_TEST_BACKEND"])
