"""README's "Testing your workflows", run as written: Celery's own pytest fixtures
(``celery.contrib.pytest``: ``celery_app``, ``celery_worker``) with dyrygent, and the eager
style. In-memory broker and result backend, an embedded worker thread: no server needed."""

from __future__ import annotations

import pytest
from celery import chain, chord

from dyrygent import Workflow, register_workflow_processor


@pytest.fixture
def app(celery_app):
    """The fixture app with the processor and the tasks; requested before celery_worker,
    so the worker starts knowing them."""
    register_workflow_processor(celery_app, max_interval=0.1)

    @celery_app.task(name="shop.price")
    def price(item, quantity):
        return {"apple": 3, "pear": 5}[item] * quantity

    @celery_app.task(name="shop.total")
    def total(prices):
        return sum(prices)

    return celery_app


def order(app):
    price, total = app.tasks["shop.price"], app.tasks["shop.total"]
    return chain(
        price.si("apple", 1), chord([price.si("apple", 2), price.si("pear", 1)], total.s())
    )


@pytest.mark.timeout(30)
def test_a_workflow_runs_on_the_embedded_worker(app, celery_worker):
    # Given Celery's fixture app with the processor registered, and its embedded worker
    # When a workflow is started as in production
    wf = Workflow(app=app)
    wf.add_celery_canvas(order(app))
    result = wf.apply_async()
    # Then the worker runs it, with the value the canvas gives natively
    assert result.get(timeout=10) == order(app).apply_async().get(timeout=10) == 11
    assert set(result.states().values()) == {"SUCCEEDED"}


def test_a_workflow_runs_eagerly_without_a_worker(app):
    # Given no worker at all
    # When the workflow is applied in process
    wf = Workflow(app=app)
    wf.add_celery_canvas(order(app))
    result = wf.apply()
    # Then it has already run, with the value of the canvas's own apply()
    assert result.get() == order(app).apply().get() == 11
