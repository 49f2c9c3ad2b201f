"""Steering without a worker (memory broker, in-memory backend): hooks per class and per
workflow, the header they travel in, skip, custom payloads, simulate, and cancel, retry
and forget through the in-process store."""

from __future__ import annotations

from datetime import timedelta

import pytest
from celery import Celery
from celery.exceptions import TaskRevokedError

from dyrygent import (
    BuildError,
    SteeringError,
    Workflow,
    WorkflowResult,
    list_workflows,
    register_workflow_processor,
)
from dyrygent.engine.notify import _resolve
from dyrygent.engine.spec import Header, decode_header, encode_header
from dyrygent.engine.stores import KEEP_AFTER, records_keep, store_for
from dyrygent.errors import PayloadError


def make_app():
    app = Celery("steer", broker="memory://", backend="cache+memory://", set_as_current=False)
    register_workflow_processor(app)

    @app.task(name="steer.add", shared=False)
    def add(x, y):
        return x + y

    return app, add


def on_finish(workflow, payload):
    """A module-level hook (importable by name)."""


def on_state_change(workflow, payload):
    """Another."""


class Nightly(Workflow):
    pass


class Hourly(Workflow):
    pass


Nightly.connect("on_finish")(on_finish)


class NightlyLate(Nightly):
    pass


NightlyLate.connect("on_state_change")(on_state_change)


def test_hooks_belong_to_the_subclass_and_its_subclasses_only():
    # Given hooks connected on Nightly, and more on its subclass NightlyLate
    # Then each class's workflows carry its own and its bases', and nobody else's
    here = __name__
    assert Nightly()._header(None).hooks == {"on_finish": [f"{here}.on_finish"]}
    assert NightlyLate()._header(None).hooks == {
        "on_finish": [f"{here}.on_finish"],
        "on_state_change": [f"{here}.on_state_change"],
    }
    assert Hourly()._header(None).hooks == {} and Workflow()._header(None).hooks == {}
    # and a hook connected on one workflow stays on it
    one, other = Hourly(), Hourly()
    one.connect("on_finish")(on_finish)
    assert one._header(None).hooks == {"on_finish": [f"{here}.on_finish"]}
    assert other._header(None).hooks == {}


def test_hooks_that_workers_could_not_import_are_refused():
    def nested(workflow, payload):
        pass

    with pytest.raises(BuildError, match="module-level function they can import"):
        Workflow().connect("on_finish")(nested)
    with pytest.raises(BuildError, match="subclass Workflow"):
        Workflow.connect("on_finish")(on_finish)


def test_a_stored_hook_path_must_name_a_user_function():
    assert _resolve(f"{__name__}.on_finish") is on_finish
    with pytest.raises(ValueError, match="not a user function"):
        _resolve("os.system")
    with pytest.raises(ValueError, match="not a function"):
        _resolve(f"{__name__}.Nightly")


def test_the_header_is_version_2_without_the_new_fields_and_3_with_them():
    # Given a header without extras, Then it is written as before (older workers read it)
    assert b'"version": 2' in encode_header(Header())
    # Given one with every new field, Then it round-trips as version 3
    header = Header(
        custom_payload={"a": 1},
        node_payloads={"n": {"b": 2}},
        hooks={"on_finish": ["m.f"]},
        link={"task": "t.x", "args": [], "kwargs": {}, "options": {}},
    )
    decoded = decode_header(encode_header(header))
    assert decoded == Header(**{**header.__dict__, "version": 3})
    # and a field of the wrong type is refused
    bad = encode_header(header).replace(b'"hooks": {', b'"hooks": [{').replace(b"]}", b"]}]", 1)
    with pytest.raises(PayloadError, match="hooks"):
        decode_header(bad)


def test_skip_and_payloads_are_checked_when_given():
    app, add = make_app()
    wf = Workflow(app=app)
    a = wf.add_signature(add.s(1, 2))
    with pytest.raises(BuildError, match="has no such node"):
        wf.skip("nope")
    with pytest.raises(BuildError, match="must be a JSON dict"):
        wf.add_signature(add.s(1, 1), custom_payload={"x": object()})
    with pytest.raises(BuildError, match="must be a JSON dict"):
        Workflow(custom_payload=["not", "a", "dict"])  # type: ignore[arg-type]
    wf.apply_async()
    with pytest.raises(BuildError, match="already started"):
        wf.skip(a)


def test_simulate_lists_the_waves_without_running_anything():
    app, add = make_app()
    wf = Workflow(app=app)
    a = wf.add_signature(add.s(1, 2))
    b = wf.add_signature(add.s(1), a)
    c = wf.add_signature(add.s(2), a)
    d = wf.add_signature(add.s(3), [b, c])
    assert wf.simulate() == [[a.id], [b.id, c.id], [d.id]]
    wf.skip(b, result=1)
    assert wf.simulate() == [[a.id], [c.id], [d.id]]
    assert store_for(app).status(wf.id).status is None  # nothing was stored


def test_cancel_retry_and_forget_in_process():
    # Given a started workflow whose roots were published (no worker runs them)
    app, add = make_app()
    wf = Workflow(app=app, custom_payload={"who": "me"})
    a = wf.add_signature(add.s(1, 2), label="first")
    wf.add_signature(add.s(1), a)
    result = WorkflowResult(wf.id, app=app)  # a handle from the id alone
    wf.apply_async()
    assert [n.label for n in result.nodes] == ["first", "steer.add"]
    assert result.info().nodes[0].state == "LAUNCHED"
    # When it is cancelled
    assert result.cancel() is True
    # Then it ended CANCELLED, every node too; get() raises; a second cancel is a no-op
    info = result.info()
    assert (info.state, info.custom_payload) == ("CANCELLED", {"who": "me"})
    assert [n.state for n in info.nodes] == ["CANCELLED", "CANCELLED"]
    with pytest.raises(TaskRevokedError):
        result.get(timeout=1)
    assert result.cancel() is False
    assert wf.id in [i.id for i in list_workflows(app, state="cancelled")]
    # When it is retried
    assert result.retry() is True
    # Then it runs again at the next generation, its nodes back to WAITING, logged
    info = result.info()
    assert info.state == "RUNNING" and info.ended is None
    assert [e.new for e in result.history()][-2:] == ["WAITING", "WAITING"]
    assert store_for(app).status(wf.id).gen == 2
    with pytest.raises(SteeringError, match="is running"):
        result.retry()
    # When it is forgotten, Then nothing is left
    result.forget()
    assert result.info().state == "PENDING"
    assert wf.id not in [i.id for i in list_workflows(app)]  # (the memory cache is shared)
    with pytest.raises(SteeringError, match="unknown state"):
        list_workflows(app, state="done")


@pytest.mark.parametrize(
    "expires, keep",
    [(timedelta(hours=2), 7200), (60, 60), (None, 10 * 365 * 24 * 3600), (0, KEEP_AFTER)],
)
def test_records_are_kept_as_long_as_results(expires, keep):
    app = Celery("keep", set_as_current=False)
    app.conf.result_expires = expires
    assert records_keep(app) == keep


def test_retry_of_an_error_end_refuses_while_a_node_it_left_in_flight_has_not_finished():
    # Given a workflow that ended in ERROR (past its max_age) with its root launched
    import time

    from dyrygent import SteeringError
    from dyrygent.engine.registry import processor_of
    from tests.harness import wait_for

    app, add = make_app()
    wf = Workflow(app=app, max_age=1)
    a = wf.add_signature(add.s(1, 2))
    result = wf.apply_async()
    assert result.info().nodes[0].state == "LAUNCHED"
    started = time.time()
    wait_for(lambda: time.time() > started + 1.2, 5, "the maximum age to pass")
    processor_of(app).tick_here(wf.id, "a-later-tick")
    assert result.info().state == "ERROR"
    # When it is retried while its root may still be queued or running
    # Then the retry is refused naming the node (relaunching it could run it twice)
    with pytest.raises(SteeringError, match=f"node {a.id} .* has not finished yet: wait for it"):
        result.retry()
    assert result.info().state == "ERROR"
