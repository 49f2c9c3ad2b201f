"""dyrygent.testing runs whole workflows in this process, through the public API only."""

from __future__ import annotations

import time

import pytest
from celery import Celery, chain, chord, group

from dyrygent import Workflow
from dyrygent.testing import make_app, wait_until
from tests.inprocess.tasks import NodeFailed

# Each workflow takes well under a second here; the bound leaves room for a loaded machine.
pytestmark = pytest.mark.timeout(30)
TIMEOUT = 10


def run(app: Celery, canvas: object) -> object:
    wf = Workflow(app=app)
    wf.add_celery_canvas(canvas)
    return wf.apply_async().get(timeout=TIMEOUT)


def test_a_chain_passes_each_result_to_the_next_step(app: Celery) -> None:
    # Given a chain of three additions
    add = app.tasks["t.add"]
    # When it runs as a workflow
    value = run(app, chain(add.s(1, 2), add.s(3), add.s(4)))
    # Then each step got the previous result
    assert value == 10


def test_a_group_returns_its_members_results_in_order(app: Celery) -> None:
    # Given a group of five additions
    add = app.tasks["t.add"]
    # When it runs as a workflow
    value = run(app, group(add.si(i, i) for i in range(5)))
    # Then the result lists them in the group's order
    assert value == [0, 2, 4, 6, 8]


def test_a_chord_body_gets_the_header_results(app: Celery) -> None:
    # Given a chord of ten additions summed by its body
    add, tsum = app.tasks["t.add"], app.tasks["t.tsum"]
    # When it runs as a workflow
    value = run(app, chord([add.si(i, 1) for i in range(10)], tsum.s()))
    # Then the body summed every header result
    assert value == sum(range(10)) + 10


def test_a_failing_node_raises_its_own_exception_from_get(app: Celery) -> None:
    # Given a chain whose second step fails
    add, fail = app.tasks["t.add"], app.tasks["t.fail"]
    wf = Workflow(app=app)
    wf.add_celery_canvas(chain(add.si(1, 1), fail.s(), add.s(1)))
    # When it runs
    result = wf.apply_async()
    # Then get() raises the node's exception, its type and message unchanged
    with pytest.raises(NodeFailed, match=r"^node failed on purpose with \[2\]$"):
        result.get(timeout=TIMEOUT)
    # And once the failure is committed, the step after it was never launched
    first, failed, after = (n.id for n in wf.nodes)
    wait_until(lambda: result.states()[failed] == "FAILED", TIMEOUT, "the final commit")
    states = result.states()
    assert (states[first], states[failed]) == ("SUCCEEDED", "FAILED")
    assert states[after] in {"WAITING", "UPSTREAM_FAILED"}, states
    assert result.node(after).state == "PENDING"


def test_wait_until_returns_the_condition_value_once_it_holds() -> None:
    # Given a condition that holds after a few calls
    calls = []

    def third_call() -> int | None:
        calls.append(1)
        return len(calls) if len(calls) >= 3 else None

    # Then wait_until returns its first truthy value
    assert wait_until(third_call, 5, "the third call") == 3


def test_wait_until_names_what_it_waited_for_and_the_last_error() -> None:
    # Given a condition that never holds and last raised an error
    def broken() -> None:
        raise ValueError("not there yet")

    # Then after the deadline it raises TimeoutError saying what and why
    started = time.monotonic()
    with pytest.raises(
        TimeoutError,
        match=r"timed out after 0.2s waiting for the answer .*ValueError\('not there yet'\)",
    ):
        wait_until(broken, 0.2, "the answer")
    assert time.monotonic() - started < 2


def test_make_app_gives_each_app_its_own_queue_and_the_processor() -> None:
    # When two apps are made with the same name
    a, b = make_app(), make_app()
    # Then each has its own default queue (the in-memory broker is shared by the process),
    # and the processor registered
    assert a.conf.task_default_queue != b.conf.task_default_queue
    assert "dyrygent.processor" in a.tasks and "dyrygent.processor" in b.tasks
