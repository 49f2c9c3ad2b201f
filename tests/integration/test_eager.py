"""The eager column of the differential suite: every canvas of ``test_differential.CASES`` run
in process, natively (``canvas.apply()``) and through dyrygent (``Workflow.apply()``, and
``apply_async()`` under ``task_always_eager``), must give the same result or raise the same
exception. No broker, no result backend, no worker: the app's broker and backend are
in-memory and never used.

Native eager canvases stop a chain (and the group around it) at the first failure, while
dyrygent lets independent branches go on (README, "Failures"); so on failure dyrygent's calls
must include native's, not equal them.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from typing import Any

import celery
import pytest
import workerapp
from celery import Celery, chain, chord
from celery.result import ResultBase

from dyrygent import EagerWorkflowResult, Workflow
from dyrygent.errors import BuildError, ConfigurationError
from tests.integration.test_differential import CASES, Case, calls_of, outcome_of

LEDGER: list[list] = []

#: Before Celery 5.7, a native eager chain.apply() fires the chain's link after every step
#: (seen on 5.3 and 5.5; a worker fires it once, and 5.7's apply() does too, as dyrygent
#: does): only the results are compared for such a case there.
CHAIN_LINK_ONCE = celery.VERSION >= (5, 7)
LINK_EVERY_STEP = {"26-chain-link"}

#: Cases whose eager runs are not comparable, and why.
NOT_EAGER = {
    # Celery ignores time limits in apply(): the task sleeps its full 5 s in both runs
    "5-soft-time-limit": "time limits do not apply to eager runs",
    # Celery 5.7's eager canvas.apply() raises AttributeError ('NoneType' object has no
    # attribute 'parent') on this one, and it has no declared value to compare with
    "group-of-one-chain-of-an-empty-group": "native eager apply() crashes on it",
}
#: Cases where Celery 5.7's eager canvas.apply() disagrees with its own workers: it crashes
#: (AttributeError: 'NoneType' object has no attribute 'parent'), or nests a group one level
#: deeper. dyrygent's eager run is compared with the value workers give natively (the
#: differential suite checks that value on workers).
NATIVE_EAGER_WRONG = {
    "9772-args-go-past-a-leading-empty-chain": "raises AttributeError",
    "group-of-one-chain-ending-in-group-is-that-group": "returns [[4, 5]]; workers [4, 5]",
}


def recorded(fn: Any) -> Any:
    """Record each call in LEDGER as workerapp records it in Redis."""
    pass_self = getattr(fn, "bound", False)

    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        LEDGER.append([self.request.id, self.name, list(args), kwargs, 0, time.time()])
        return fn(self, *args, **kwargs) if pass_self else fn(*args, **kwargs)

    return wrapper


def eager_app() -> Celery:
    """An app with the differential tasks, in memory, ``task_always_eager`` on."""
    app = Celery("eager", broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.task_always_eager = True
    for fn in workerapp.TASKS:
        app.task(name=f"t.{fn.__name__}", bind=True, shared=False)(recorded(fn))
    return app


@pytest.fixture(scope="module")
def et() -> Any:
    app = eager_app()
    app.set_current()
    return workerapp.Tasks(app)


def native(case: Case, t: Any) -> tuple[tuple, Counter]:
    LEDGER.clear()
    canvas = case.build(t)
    outcome = outcome_of(lambda: canvas.apply(args=case.args).get())
    if outcome[0] == "value" and isinstance(outcome[1], ResultBase):
        # an eager chunks() returns the GroupResult of its chunks as its value (the
        # celery.chunks task's own return); its value is what a worker run returns
        outcome = ("value", outcome[1].get())
    return outcome, calls_of(LEDGER)


def mine(case: Case, t: Any, how: str) -> tuple[tuple, Counter]:
    LEDGER.clear()
    wf = Workflow(app=t.app)
    wf.add_celery_canvas(case.build(t), args=case.args)
    result = wf.apply() if how == "apply" else wf.apply_async()
    assert isinstance(result, EagerWorkflowResult)
    return outcome_of(lambda: result.get()), calls_of(LEDGER)


@pytest.mark.parametrize("how", ["apply", "apply_async"])
@pytest.mark.parametrize("case", [c for c in CASES if not c.skip_native], ids=lambda c: c.id)
def test_eager_differential(case: Case, how: str, et: Any) -> None:
    # Given a canvas of the differential suite on an eager, in-memory app
    if case.id in NOT_EAGER:
        pytest.skip(NOT_EAGER[case.id])
    # When it runs natively with canvas.apply() and through dyrygent in process
    expected, expected_calls = native(case, et)
    if case.id in NATIVE_EAGER_WRONG:
        assert expected != ("value", case.value)  # still wrong natively: keep the case honest
        expected = ("value", case.value)
    outcome, calls = mine(case, et, how)
    # Then both give the same value, or raise the same exception with the same message
    assert outcome == expected
    # And on success every task received the same arguments
    if (
        expected[0] == "value"
        and case.id not in NATIVE_EAGER_WRONG
        and (CHAIN_LINK_ONCE or case.id not in LINK_EVERY_STEP)
    ):
        assert calls == expected_calls
    # And on failure every call native made was made (errbacks included), and nothing behind
    # the failed node ran; dyrygent may have gone on in independent branches
    if expected[0] == "raised":
        assert not expected_calls - calls
        assert not [e for e in LEDGER if e[3].get("never")]


def test_the_issue_canvas_runs_eagerly(et: Any) -> None:
    # Given the canvas of issue 15 and task_always_eager
    def canvas() -> Any:
        return chain(et.add.si(1, 1), chord([et.add.s(i) for i in range(3)], et.tsum.s()))

    wf = Workflow(app=et.app)
    ends = wf.add_celery_canvas(canvas())
    # When it is started with apply_async()
    result = wf.apply_async()
    # Then it ran already, with native's value, and every node has its own result
    assert result.get(timeout=5) == canvas().apply_async().get() == 9
    assert result.node(ends[0]).get() == 9
    assert set(result.states().values()) == {"SUCCEEDED"}
    assert result.info().state == "SUCCESS"


def test_a_failed_node_raises_from_get_and_settles_its_descendants(et: Any) -> None:
    # Given a chain whose middle step fails
    wf = Workflow(app=et.app)
    wf.add_celery_canvas(chain(et.add.si(1, 1), et.fail.s(), et.echo.s(never=1)))
    # When it is applied
    result = wf.apply()
    # Then get() raises the node's own exception, and the last step never ran
    with pytest.raises(workerapp.ExpectedError, match="expected failure"):
        result.get()
    assert result.get(propagate=False).args == ("expected failure",)
    assert list(result.states().values()) == ["SUCCEEDED", "FAILED", "UPSTREAM_FAILED"]
    assert result.node(wf.nodes[2]).state == "PENDING"
    assert result.info().state == "FAILURE"


def test_apply_needs_no_processor_but_every_task(et: Any) -> None:
    # Given an app without the processor, and a signature of a task it does not know
    wf = Workflow(app=et.app)
    wf.add_signature(et.app.signature("t.unknown", args=(1,)))
    # When it is applied, Then it is refused before anything runs, naming the task
    with pytest.raises(ConfigurationError, match=r"task 't\.unknown' is not registered"):
        wf.apply()

    # And once the task is registered, the same workflow runs
    def tenfold(x: int) -> int:
        return x * 10

    et.app.task(name="t.unknown", shared=False)(tenfold)
    assert wf.apply().get() == 10


def test_a_workflow_applies_once(et: Any) -> None:
    # Given a workflow that ran
    wf = Workflow(app=et.app)
    wf.add_signature(et.add.si(1, 2))
    assert wf.apply().get() == 3
    # When it is applied again, Then it is refused: its nodes keep their task ids
    with pytest.raises(BuildError, match="was already started"):
        wf.apply()


def test_eager_propagates_raises_from_apply_as_natively() -> None:
    # Given an eager app that propagates task errors (Django test settings often set
    # CELERY_TASK_EAGER_PROPAGATES = True)
    app = eager_app()
    app.conf.task_eager_propagates = True
    t = workerapp.Tasks(app)
    wf = Workflow(app=app)
    wf.add_celery_canvas(chain(t.add.si(1, 1), t.fail.s()))
    # When it is started, Then apply_async() raises the node's exception, as natively
    with pytest.raises(workerapp.ExpectedError, match="expected failure"):
        chain(t.add.si(1, 1), t.fail.s()).apply_async()
    with pytest.raises(workerapp.ExpectedError, match="expected failure"):
        wf.apply_async()


def test_a_node_of_another_workflow_is_refused_by_name(et: Any) -> None:
    wf = Workflow(app=et.app)
    wf.add_signature(et.add.si(1, 2))
    with pytest.raises(KeyError, match="node 'nope' is not in workflow"):
        wf.apply().node("nope")
