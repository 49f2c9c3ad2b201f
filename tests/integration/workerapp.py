"""The Celery app the integration tests' workers run (and the tests publish with).

Configured from the environment: DYRYGENT_TEST_BROKER, DYRYGENT_TEST_BACKEND,
DYRYGENT_TEST_LEDGER (a Redis URL whose list ``ledger`` records every task run) and
DYRYGENT_TEST_QUEUE. Each task appends ``[task_id, name, args, kwargs, pid, started]`` to the
list ``ledger`` before it runs, and ``[task_id, ended]`` to ``ledger:ends`` when it returns or
raises, so tests can check what every node received, how often it ran, and in which order.
Both times are the ledger Redis server's ``TIME``: one clock for every worker and host.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import time

import redis
from celery import Celery, group
from celery.signals import after_task_publish, before_task_publish, task_postrun
from redis.backoff import ConstantBackoff
from redis.retry import Retry

from dyrygent import register_workflow_processor
from dyrygent import signals as dyrygent_signals
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


_LINEAGE = {"on": os.environ.get("DYRYGENT_TEST_FAULTS") == "1"}


@contextlib.contextmanager
def recording_lineage():
    """Record the lineage of this process's publishes too (a worker with faults on always
    records it) to the ledger list ``publish:lineage``."""
    before = _LINEAGE["on"]
    _LINEAGE["on"] = True
    try:
        yield
    finally:
        _LINEAGE["on"] = before


@before_task_publish.connect
def _record_lineage(sender=None, headers=None, body=None, **_):
    """[task id, task, root_id, parent_id, args] of each publish (Flower's view)."""
    if not _LINEAGE["on"]:
        return
    h = headers or {}
    args = list(body[0]) if isinstance(body, (list, tuple)) and body else []
    _ledger_client().rpush(
        "publish:lineage",
        json.dumps(
            [h.get("id"), str(sender), h.get("root_id"), h.get("parent_id"), args], default=str
        ),
    )


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


@task_postrun.connect
def _record_every_processor_message(sender=None, task_id=None, **_):
    """In every worker: the ledger list ``processor:done`` records the message id of each
    processor run that ended (whatever it did), so a test can wait until a processor message
    it sent has been handled before checking that it launched nothing."""
    if sender is not None and sender.name == PROCESSOR_NAME:
        _ledger_client().rpush("processor:done", task_id)


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
    """The ledger's Redis client. It retries for up to a minute on connection errors: the
    outage tests restart the server the ledger lives on, and a node that ends during the
    outage must record its end when the server is back, not fail."""
    global _ledger
    if _ledger is None:
        _ledger = redis.Redis.from_url(
            os.environ.get("DYRYGENT_TEST_LEDGER", "redis://127.0.0.1:6379/2"),
            retry=Retry(ConstantBackoff(0.1), 600),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        )
    return _ledger


def server_time() -> float:
    """Now on the ledger Redis server's clock (``TIME``), the one clock every test compares."""
    seconds, micros = _ledger_client().time()
    return seconds + micros / 1e6


def recorded(fn):
    pass_self = getattr(fn, "bound", False)

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        r = _ledger_client()
        entry = [self.request.id, self.name, list(args), kwargs, os.getpid(), server_time()]
        r.rpush("ledger", json.dumps(entry))
        try:
            if pass_self:
                return fn(self, *args, **kwargs)
            return fn(*args, **kwargs)
        finally:  # a run killed mid-way (SIGKILL) records no end
            r.rpush("ledger:ends", json.dumps([self.request.id, server_time()]))

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
    """Replace this task (Task.replace, README, Semantics, item 25) by a canvas built from ``x``:
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


def fail_once(x, key):
    """Raise ExpectedError the first time it runs for ``key`` (counted in the ledger's
    Redis), then return ``x``: a node that succeeds when its workflow is retried."""
    if _ledger_client().incr(key) == 1:
        raise ExpectedError(f"first run for {key}")
    return x


@bound
def request_info(self, *a, **k):
    """What reached this run besides its arguments: the queue it was delivered from, its
    priority, custom headers (those starting ``x-``), ETA, expiry and time limits."""
    r = self.request
    delivery = r.delivery_info or {}
    return {
        "queue": delivery.get("routing_key"),
        "priority": delivery.get("priority"),
        "headers": {k: v for k, v in (r.headers or {}).items() if k.startswith("x-")},
        "eta": r.eta,
        "expires": r.expires,
        "timelimit": list(r.timelimit or (None, None)),
    }


def fail_until(x, key):
    """Fail until the ledger's Redis has ``key`` (a test sets it before a retry)."""
    if not _ledger_client().exists(key):
        raise ExpectedError(f"{key} not set")
    return x


def gate(x, key, timeout=30.0):
    """Wait until the ledger's Redis has ``key`` (a test opens the gate), then return ``x``:
    a node that runs exactly as long as the test needs it to."""
    deadline = time.monotonic() + timeout
    while not _ledger_client().exists(key) and time.monotonic() < deadline:
        time.sleep(0.02)  # the condition lives in another process
    return x


TASKS = [
    add,
    gate,
    mul,
    tsum,
    identity,
    echo,
    fail,
    noop,
    sleep_then,
    replace_with,
    flaky,
    fail_until,
    request_info,
    fail_once,
    die,
]


# --- steering tests: signals and hooks record to the ledger list "signals" -----------------


def _watched(workflow_id) -> bool:
    return bool(_ledger_client().sismember("signals:watch", workflow_id or ""))


def _recorder(name):
    def receiver(sender=None, workflow_id=None, **kw):
        if _watched(workflow_id):
            detail = kw.get("node_id") or kw.get("new") or kw.get("state") or kw.get("launched")
            _ledger_client().rpush("signals", json.dumps([name, detail, os.getpid()]))

    receiver.__name__ = f"record_{name}"
    return receiver


_RECEIVERS = {
    name: _recorder(name)
    for name in (
        "workflow_state_changed",
        "workflow_finished",
        "node_started",
        "node_succeeded",
        "node_failed",
        "after_tick",
    )
}


def connect_recorders(connect: bool = True) -> None:
    """Record dyrygent's signals for the workflows in the ledger set ``signals:watch``
    (connected in workers started with DYRYGENT_TEST_SIGNALS=1, and by the steering tests
    in their own process; nowhere else, so other tests pay nothing)."""
    for name, receiver in _RECEIVERS.items():
        signal = getattr(dyrygent_signals, name)
        if connect:
            signal.connect(receiver, weak=False)
        else:
            signal.disconnect(receiver)


if os.environ.get("DYRYGENT_TEST_SIGNALS") == "1":
    connect_recorders()


def hook_on_finish(workflow, payload):
    """A workflow hook (celery-dyrygent's on_finish), importable by the workers."""
    _ledger_client().rpush(
        "signals", json.dumps(["hook:on_finish", payload["state"], os.getpid(), workflow.id])
    )


def hook_on_state_change(workflow, payload):
    _ledger_client().rpush(
        "signals", json.dumps(["hook:on_state_change", payload["new"], os.getpid(), workflow.id])
    )


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
