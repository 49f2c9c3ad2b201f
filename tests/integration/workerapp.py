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
import signal
import time

import redis
from celery import Celery, group
from celery.signals import after_task_publish, before_task_publish, task_postrun

from dyrygent import register_workflow_processor
from dyrygent.engine.wake import PROCESSOR_NAME
from dyrygent.signals import tick_claimed

QUEUE = os.environ.get("DYRYGENT_TEST_QUEUE", "celery")


def make_app(
    broker: str,
    backend: str,
    name: str = "workerapp",
    queue: str | None = None,
    visibility_timeout: float | None = None,
    acks_late: bool | None = None,
    max_interval: float | None = None,
    processor_queue: str | None = None,
    track_started: bool | None = None,
) -> Celery:
    """A Celery app with the test tasks and the dyrygent processor registered.

    Unset arguments come from the environment (DYRYGENT_TEST_QUEUE, _VISIBILITY,
    _ACKS_LATE, _MAX_INTERVAL, _PROCESSOR_QUEUE, _TRACK_STARTED: "0" for Celery's default,
    _ORPHAN_GRACE: seconds, or "off"), so a worker subprocess and the test's client app agree.
    """
    if visibility_timeout is None:
        visibility_timeout = float(os.environ.get("DYRYGENT_TEST_VISIBILITY", "30"))
    if acks_late is None:
        acks_late = os.environ.get("DYRYGENT_TEST_ACKS_LATE") == "1"
    if max_interval is None:
        max_interval = float(os.environ.get("DYRYGENT_TEST_MAX_INTERVAL", "0.5"))
    if processor_queue is None:
        processor_queue = os.environ.get("DYRYGENT_TEST_PROCESSOR_QUEUE")
    if track_started is None:
        track_started = os.environ.get("DYRYGENT_TEST_TRACK_STARTED", "1") == "1"
    grace = os.environ.get("DYRYGENT_TEST_ORPHAN_GRACE", "10")
    orphan_grace = None if grace == "off" else float(grace)  # (off: benchmarks' A/B)
    app = Celery(name, broker=broker, backend=backend)
    app.conf.update(
        task_default_queue=queue or QUEUE,
        broker_connection_retry_on_startup=True,
        result_expires=3600,
        worker_hijack_root_logger=False,
        # Fast recovery in tests; production needs a visibility_timeout above any countdown.
        broker_transport_options={
            "visibility_timeout": visibility_timeout,
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
        },
        # The production settings the README asks for when workers may die.
        task_acks_late=acks_late,
        task_reject_on_worker_lost=acks_late,
        task_track_started=track_started,
        # a worker that cannot store a result during a backend outage retries instead of
        # dropping it (production setting, see README.rst)
        result_backend_always_retry=True,
        result_backend_max_retries=100,
    )
    if processor_queue:
        app.conf.task_routes = {PROCESSOR_NAME: {"queue": processor_queue}}
    if os.environ.get("DYRYGENT_TEST_SIGNING_KEY") and name == "workerapp":
        app.conf.dyrygent_signing_key = os.environ["DYRYGENT_TEST_SIGNING_KEY"]
    # a short lease and backup-tick backoff: tests kill workers mid-tick and should not wait
    # the defaults (10 s each)
    register_workflow_processor(
        app,
        min_interval=0.01,
        max_interval=max_interval,
        lease=2,
        idle_interval=2,
        orphan_grace=orphan_grace,
    )
    for fn in TASKS:
        app.task(name=f"t.{fn.__name__}", bind=True, shared=False)(recorded(fn))
    app.task(name="t.ping", shared=False)(ping)
    return app


_ledger = None


@before_task_publish.connect
def _record_publish_attempt(sender=None, headers=None, **_):
    """In a fault worker: the ledger list ``publish:tried`` records each node publish
    attempted, and ``publish:done`` (below) each that went through: the difference is the
    publishes that failed."""
    if os.environ.get("DYRYGENT_TEST_FAULTS") == "1" and str(sender).startswith("t."):
        _ledger_client().rpush("publish:tried", (headers or {}).get("id", ""))


@after_task_publish.connect
def _fault_injection(sender=None, headers=None, body=None, **_):
    """In a worker started with DYRYGENT_TEST_FAULTS=1: a fault mid-tick.

    Armed by the test through ledger keys: ``fault:countdown`` (die when it reaches 0 after
    a node publish, i.e. mid-tick after launching some nodes), ``fault:mode`` (``worker``:
    the whole worker's process group; ``child``: only this pool process, as the OOM killer
    would; ``broker``: hold this publish until the test has stopped the broker, so the
    tick's next publishes fail mid-launch). See also _die_every_tick.
    """
    if os.environ.get("DYRYGENT_TEST_FAULTS") != "1" or not str(sender).startswith("t."):
        return
    r = _ledger_client()
    r.rpush("publish:done", (headers or {}).get("id", ""))
    if r.exists("fault:countdown") and r.decr("fault:countdown") == 0:
        mode = (r.get("fault:mode") or b"child").decode()
        r.rpush("fault:kills", mode)
        if mode == "broker":
            deadline = time.monotonic() + 60
            while not r.exists("fault:broker-down") and time.monotonic() < deadline:
                time.sleep(0.05)  # the test stops the broker: a condition in another process
            return
        if mode == "worker":
            os.killpg(os.getpgid(0), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)


@task_postrun.connect
def _record_processor_run(sender=None, task_id=None, args=None, retval=None, **_):
    """In a fault worker: the ledger list ``processor`` records every processor run as
    [message id, args, what it did], so a test can count them."""
    if (
        os.environ.get("DYRYGENT_TEST_FAULTS") != "1"
        or sender is None
        or sender.name != PROCESSOR_NAME
    ):
        return
    _ledger_client().rpush("processor", json.dumps([task_id, list(args or ()), repr(retval)]))


@tick_claimed.connect
def _die_every_tick(workflow_id=None, driver=False, **_):
    """In a fault worker: ``fault:always`` names a workflow every tick of which dies (SIGKILL
    of the pool child) right after claiming it, as a tick that runs out of memory would;
    ``fault:kill-driver`` names one whose first driver tick kills its whole worker."""
    if os.environ.get("DYRYGENT_TEST_FAULTS") != "1":
        return
    r = _ledger_client()
    always = r.get("fault:always")
    if always is not None and workflow_id == always.decode():
        r.rpush("fault:kills", "child")
        os.kill(os.getpid(), signal.SIGKILL)
    if driver and r.get("fault:kill-driver") == workflow_id.encode():
        r.rpush("fault:kills", "driver")
        os.killpg(os.getpgid(0), signal.SIGKILL)


def _ledger_client():
    global _ledger
    if _ledger is None:
        _ledger = redis.Redis.from_url(
            os.environ.get("DYRYGENT_TEST_LEDGER", "redis://127.0.0.1:6379/2")
        )
    return _ledger


def recorded(fn):
    pass_self = getattr(fn, "bound", False)

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        _ledger_client().rpush(
            "ledger",
            json.dumps([self.request.id, self.name, list(args), kwargs, os.getpid(), time.time()]),
        )
        if pass_self:
            return fn(self, *args, **kwargs)
        return fn(*args, **kwargs)

    return wrapper


def bound(fn):
    """Mark a task function that takes the task itself first (to call ``self.replace``)."""
    fn.bound = True
    return fn


class ExpectedError(Exception):
    pass


def add(x, y):
    return x + y


def mul(x, y):
    return x * y


def tsum(xs):
    return sum(xs)


def identity(x):
    return x


def echo(*a, **k):
    return [list(a), k]


def fail(*a, **k):
    raise ExpectedError("expected failure")


def noop(*a, **k):
    return None


def sleep_then(x, seconds=0.1):
    time.sleep(seconds)
    return x


@bound
def replace_with(self, x, kind="task"):
    """Replace this task (Task.replace, SEMANTICS item 25) by a canvas built from ``x``:
    "task": add(x, 100); "chain": add(x, 1) | mul(10); "group": [add(x, 1), add(x, 2)]."""
    add, mul = self.app.tasks["t.add"], self.app.tasks["t.mul"]
    if kind == "chain":
        sig = add.si(x, 1) | mul.s(10)
    elif kind == "group":
        sig = group(add.si(x, 1), add.si(x, 2))
    else:
        sig = add.si(x, 100)
    return self.replace(sig)


def die(x):
    """Kill this pool process, as the OOM killer would (Celery: WorkerLostError)."""
    os.kill(os.getpid(), signal.SIGKILL)


def ping():
    return "pong"


@bound
def flaky(self, x, key, failures=2):
    """Retry (self.retry) ``failures`` times, counted in the ledger's Redis under ``key``,
    then return ``x``."""
    if _ledger_client().incr(key) <= failures:
        raise self.retry(countdown=0.05, max_retries=failures + 1)
    return x


TASKS = [add, mul, tsum, identity, echo, fail, noop, sleep_then, replace_with, flaky, die]

app = make_app(
    os.environ.get("DYRYGENT_TEST_BROKER", "redis://127.0.0.1:6379/0"),
    os.environ.get("DYRYGENT_TEST_BACKEND", "redis://127.0.0.1:6379/1"),
)


class Tasks:
    """The test tasks of one app by short name: ``Tasks(app).add.s(1, 2)``."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        for fn in TASKS:
            setattr(self, fn.__name__, app.tasks[f"t.{fn.__name__}"])
