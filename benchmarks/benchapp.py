"""The Celery app the benchmark worker runs and the benchmark clients publish with.

Built on tests/integration/workerapp.make_app (the test tasks and dyrygent's processor), plus:

* ``bench.noop``: a task that does nothing (``t.noop`` also appends to the test ledger, one
  Redis round trip per task that is not what we want to time);
* celery-dyrygent 0.8.0's processor (``workflow-processor``), registered the way its README
  says, with ``celery_dyrygent.tasks.register_workflow_processor(app)``;
* dyrygent's processor set back to the library's default tick intervals (make_app registers
  it with the integration tests' faster ones); ``BENCH_DYRYGENT_INTERVALS=min,max`` overrides;
* the broker's visibility timeout back to kombu's default (1 h): make_app lowers it to 30 s for
  fast recovery in kill tests, and celery-dyrygent's idle countdown reaches 30 s, which would
  let Redis redeliver its processor (README, Reliability, item 1), an artefact of the test
  setting;
* ``task_track_started`` and ``task_acks_late`` back to Celery's defaults (off): make_app turns
  them on for the kill tests (BENCH_TRACK_STARTED=1 measures with STARTED states);
* :mod:`benchmarks.instrument` in every process, recording to ``BENCH_STATS_URL``.

Configured from the environment like workerapp: DYRYGENT_TEST_BROKER, DYRYGENT_TEST_BACKEND,
DYRYGENT_TEST_LEDGER, BENCH_STATS_URL; BENCH_PROFILE_DIR (cProfile every processor run, see
instrument.install), BENCH_TRACE_TASKS=1 (record when each task ends), and for experiments
BENCH_DYRYGENT_INTERVALS=min,max.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import workerapp  # noqa: E402
from celery import Celery  # noqa: E402
from celery_dyrygent.tasks import register_workflow_processor as register_cd  # noqa: E402

from benchmarks import instrument  # noqa: E402
from dyrygent.engine.processor import Processor  # noqa: E402
from dyrygent.engine.registry import processor_of  # noqa: E402

NOOP = "bench.noop"


def noop(*args: Any, **kwargs: Any) -> None:
    return None


def dyrygent_intervals() -> tuple[float, float]:
    """(min_interval, max_interval) for dyrygent's processor: the library defaults unless
    BENCH_DYRYGENT_INTERVALS says otherwise."""
    env = os.environ.get("BENCH_DYRYGENT_INTERVALS")
    if env:
        lo, hi = (float(x) for x in env.split(","))
        return lo, hi
    params = inspect.signature(Processor).parameters
    return params["min_interval"].default, params["max_interval"].default


def make_bench_app(broker: str, backend: str, name: str = "benchapp") -> Celery:
    app = workerapp.make_app(broker, backend, name=name)
    app.conf.broker_transport_options = {"visibility_timeout": 3600}
    # Celery's defaults, not the integration tests' (an extra STARTED write per task).
    app.conf.task_track_started = os.environ.get("BENCH_TRACK_STARTED") == "1"
    app.conf.task_acks_late = False
    app.conf.task_reject_on_worker_lost = False
    app.task(name=NOOP)(noop)
    register_cd(app)
    processor = processor_of(app)
    assert processor is not None  # workerapp registered it
    lo, hi = dyrygent_intervals()
    processor.timing = dataclasses.replace(processor.timing, min_interval=lo, max_interval=hi)
    return app


app = make_bench_app(
    os.environ.get("DYRYGENT_TEST_BROKER", "redis://127.0.0.1:6379/0"),
    os.environ.get("DYRYGENT_TEST_BACKEND", "redis://127.0.0.1:6379/1"),
)

if os.environ.get("BENCH_STATS_URL"):
    # In the worker's main process the flusher thread waits for worker_process_init.
    instrument.install(
        os.environ["BENCH_STATS_URL"],
        start=False,
        profile_dir=os.environ.get("BENCH_PROFILE_DIR") or None,
        trace_tasks=os.environ.get("BENCH_TRACE_TASKS") == "1",
    )
