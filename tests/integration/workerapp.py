"""The Celery app the integration tests' workers run (and the tests publish with).

Configured from the environment: DYRYGENT_TEST_BROKER, DYRYGENT_TEST_BACKEND,
DYRYGENT_TEST_LEDGER (a Redis URL whose list ``ledger`` records every task run) and
DYRYGENT_TEST_QUEUE. Each task appends ``[task_id, name, args, kwargs, pid]`` to the ledger
before it runs, so tests can check what every node received and how often it ran.
"""

from __future__ import annotations

import functools
import json
import os
import time

import redis
from celery import Celery

from dyrygent import register_workflow_processor

app = Celery(
    "workerapp",
    broker=os.environ.get("DYRYGENT_TEST_BROKER", "redis://127.0.0.1:6379/0"),
    backend=os.environ.get("DYRYGENT_TEST_BACKEND", "redis://127.0.0.1:6379/1"),
)
QUEUE = os.environ.get("DYRYGENT_TEST_QUEUE", "celery")
app.conf.update(
    task_default_queue=QUEUE,
    worker_prefetch_multiplier=4,
    broker_connection_retry_on_startup=True,
    result_expires=3600,
    worker_hijack_root_logger=False,
    broker_transport_options={"visibility_timeout": 30},
)
register_workflow_processor(app, min_interval=0.01, max_interval=0.5)

_ledger = None


def _ledger_client():
    global _ledger
    if _ledger is None:
        _ledger = redis.Redis.from_url(os.environ.get("DYRYGENT_TEST_LEDGER",
                                                      "redis://127.0.0.1:6379/2"))
    return _ledger


def recorded(fn):
    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        _ledger_client().rpush("ledger", json.dumps(
            [self.request.id, self.name, list(args), kwargs, os.getpid(), time.time()]))
        return fn(*args, **kwargs)
    return wrapper


def task(fn=None, **options):
    def deco(f):
        return app.task(name=f"t.{f.__name__}", bind=True, **options)(recorded(f))
    return deco(fn) if fn is not None else deco


class ExpectedError(Exception):
    pass


@task
def add(x, y):
    return x + y


@task
def mul(x, y):
    return x * y


@task
def tsum(xs):
    return sum(xs)


@task
def identity(x):
    return x


@task
def echo(*a, **k):
    return [list(a), k]


@task
def fail(*a, **k):
    raise ExpectedError("expected failure")


@task
def noop(*a, **k):
    return None


@task
def sleep_then(x, seconds=0.1):
    time.sleep(seconds)
    return x


@app.task(name="t.ping")
def ping():
    return "pong"
