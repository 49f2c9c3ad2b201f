"""A pytest plugin that runs Celery's own canvas tests through dyrygent.

Loaded into a pytest run of ``t/integration/test_canvas.py`` from the Celery sdist
(``-p tests.celery_suite.plugin``, see ``test_celery_suite.py``). It

* registers the dyrygent processor on Celery's session app (the in-process worker's) and on
  each test's app (the client's), before the worker starts;
* routes every chain, group and chord a test body submits (``apply_async``, ``delay`` or a
  call, in the test's own thread) through ``Workflow().add_celery_canvas(canvas, args=...)``
  and returns the workflow's result handle; canvases applied inside the worker (by a task,
  ``Task.replace``, a chord body) stay native, as dyrygent's nodes would apply them;
* skips the tests in :data:`EXCLUDED` with their reason, and marks those of the deliberate
  differences (:data:`DIFFERENCES`);
* writes one JSON line per test to ``$DYRYGENT_SUITE_REPORT``: its id, outcome, how many
  canvases it routed, and the exclusion reason if any.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from celery.canvas import _chain, _chord, group
from celery.utils.functional import maybe_list

from dyrygent import Workflow, register_workflow_processor

_LINEAGE = (
    "checks each task's request.root_id/parent_id: dyrygent launches every node from its "
    "processor, so root_id is the workflow id and parent_id the tick that launched it"
)
#: Tests that inspect what dyrygent replaces by design, by test id (class::name prefix).
EXCLUDED: dict[str, str] = {
    "test_chain::test_parent_ids": _LINEAGE,
    "test_group::test_parent_ids": _LINEAGE,
    "test_chord::test_parent_ids": _LINEAGE,
    "test_chord::test_link_error_option_runs_on_body_failure": (
        "finds the body's errbacks' Redis counter under result.id, taking it for the body "
        "task's id: the handle's id is the workflow id (the body keeps its own)"
    ),
    "test_chord::test_simple_chord_with_a_delay_in_group_save": (
        "patches the Redis chord counter (BaseKeyValueStoreBackend._apply_chord_incr): "
        "dyrygent joins chords with its own counters"
    ),
}

#: Tests of the deliberate differences listed in README.rst ("Deliberate differences"): run
#: and reported as "differs" when they fail, never as failures.
DIFFERENCES: dict[str, str] = {
    "test_chord::test_add_to_chord": "Task.add_to_chord() is not supported",
    "test_chord::test_add_chord_to_chord": "Task.add_to_chord() is not supported",
    "test_chord::test_generator": "a generator header is consumed before publishing",
    "test_chain::test_header_failure_fails_the_chords_after": (
        "the steps after a failed chord stay PENDING"
    ),
    "test_chord::test_nested_chord_header_link_error": (
        "a nested chord whose header fails fails the outer chord, calling its errback too"
    ),
    "test_chord::test_chord_on_error": (
        "a failed chord's errback is no child of the chord's body in the result tree"
    ),
    "test_chord::test_error_propagates_from_chord": (
        "celery 6437 is fixed: .get() raises instead of hanging (a strict xfail passes)"
    ),
}

#: apply_async options that concern only how the canvas itself is published.
_PUBLISH_ONLY = {"add_to_parent", "producer", "connection", "router", "publisher", "retry"}
#: options Celery gives a chain's first task only (chain.run passes them to it).
_FIRST_TASK_ONLY = {"countdown", "eta"}

_MAIN_PID = os.getpid()
_state = threading.local()
_routed = {"count": 0}
_ORIGINALS: dict[type, Any] = {}


def _should_route(sig: Any) -> bool:
    return (
        os.getpid() == _MAIN_PID
        and threading.current_thread() is threading.main_thread()
        and not getattr(_state, "inside", False)
        and not sig.app.conf.task_always_eager
    )


def _first_leaf(sig: Any) -> Any:
    while isinstance(sig, _chain) and sig.tasks:
        sig = sig.tasks[0]
    return sig


def _through_dyrygent(cls: type, sig: Any, args: Any, kwargs: Any, options: dict) -> Any:
    original = _ORIGINALS[cls]
    refused = isinstance(sig, group) and (options.get("link") or options.get("link_error"))
    if not _should_route(sig) or refused:
        return original(sig, args, kwargs, **options)  # (a group refuses them: let it say so)
    _routed["count"] += 1
    _state.inside = True
    try:
        kwargs = dict(kwargs or {})
        if isinstance(sig, _chord):  # chord(header)(body): chord.apply_async's "body"
            body = kwargs.pop("body", None)
            if body is not None:
                sig = sig.clone()
                sig.body = body
        canvas = _with_callbacks(sig, options)
        task_id = options.pop("task_id", None)
        options = {k: v for k, v in options.items() if k not in _PUBLISH_ONLY and v is not None}
        if isinstance(canvas, _chain):
            first = {k: options.pop(k) for k in _FIRST_TASK_ONLY if k in options}
            if first:
                _first_leaf(canvas).set(**first)
        wf = Workflow()
        if task_id:
            wf.id = task_id  # the handle's id, as natively the result's
        wf.add_celery_canvas(canvas, args=tuple(args or ()), kwargs=kwargs)
        return wf.apply_async(options=options or None)
    finally:
        _state.inside = False


def _with_callbacks(sig: Any, options: dict) -> Any:
    """``sig`` with the ``link``/``link_error`` options of its apply_async linked as Celery
    links them: to a chord's body (chord._add_body_callbacks), to a chain's tasks."""
    callbacks = maybe_list(options.pop("link", None)) or []
    errbacks = maybe_list(options.pop("link_error", None)) or []
    if not (callbacks or errbacks):
        return sig
    if isinstance(sig, _chord):
        canvas = sig.clone()
        body = {"link": callbacks, "link_error": errbacks}
        canvas.body = _chord._add_body_callbacks(canvas.body, body)
        return canvas
    for callback in callbacks:
        sig.link(callback)
    for errback in errbacks:
        sig.link_error(errback)
    return sig


def _patch(cls: type) -> None:
    _ORIGINALS[cls] = cls.apply_async

    def apply_async(self: Any, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        return _through_dyrygent(cls, self, args, kwargs, options)

    apply_async.__doc__ = f"{cls.__name__}.apply_async, routed through dyrygent"
    cls.apply_async = apply_async  # type: ignore[method-assign]


def pytest_configure(config: Any) -> None:
    for cls in (_chain, group, _chord):
        _patch(cls)


def pytest_unconfigure(config: Any) -> None:
    for cls, original in _ORIGINALS.items():
        cls.apply_async = original  # type: ignore[method-assign]


def pytest_collection_modifyitems(items: list) -> None:
    for item in items:
        reason = _exclusion(item.nodeid)
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"excluded: {reason}"))


def _exclusion(nodeid: str, table: dict[str, str] = EXCLUDED) -> str:
    name = nodeid.split("::", 1)[-1]
    return next((r for prefix, r in table.items() if name.startswith(prefix)), "")


@pytest.fixture(scope="session", autouse=True)
def _dyrygent_on_the_worker_app(celery_session_app: Any) -> list[str]:
    """The processor on the session app, before celery_session_worker starts (autouse
    fixtures are set up first); returns the task names the worker knows."""
    register_workflow_processor(celery_session_app)
    return sorted(celery_session_app.tasks)


@pytest.fixture(autouse=True)
def _dyrygent_on_the_client_app(celery_app: Any, _dyrygent_on_the_worker_app: list) -> None:
    """The processor on the test's app, whose first tick runs in the client: it launches
    the tasks the worker knows (known_tasks="*" is not honoured: see the report)."""
    register_workflow_processor(celery_app, known_tasks=_dyrygent_on_the_worker_app)
    _routed["count"] = 0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    path = os.environ.get("DYRYGENT_SUITE_REPORT")
    final = (report.when == "call") or (report.when == "setup" and not report.passed)
    final = final or (report.when == "teardown" and report.failed)
    if not path or not final:
        return
    if hasattr(report, "wasxfail"):
        result = "xfailed" if report.skipped else "xpassed"
    else:
        result = report.outcome if report.when == "call" or report.skipped else "error"
    line = {
        "id": item.nodeid,
        "when": report.when,
        "outcome": result,
        "routed": _routed["count"],
        "excluded": _exclusion(item.nodeid),
        "differs": _exclusion(item.nodeid, DIFFERENCES),
        "message": str(report.longrepr)[-600:] if report.failed else "",
    }
    with open(path, "a") as f:
        f.write(json.dumps(line) + "\n")
