"""Configuration checks made when the processor is registered (no broker needed)."""

from __future__ import annotations

import pytest
from celery import Celery

from dyrygent import ConfigurationError, register_workflow_processor


def app_with(**conf):
    app = Celery("cfg", broker="memory://", backend="cache+memory://", set_as_current=False)
    app.conf.update(conf)
    return app


@pytest.mark.parametrize(
    "conf",
    [
        {"accept_content": ["json", "pickle"]},
        {"accept_content": ["application/x-python-serialize"]},
    ],
)
def test_a_processor_that_would_accept_pickle_is_refused(conf):
    with pytest.raises(
        ConfigurationError,
        match=r"refuses to run while the app accepts pickle"
        r".*allow_pickle=True",
    ):
        register_workflow_processor(app_with(**conf))


def test_pickle_as_the_processor_serializer_is_refused():
    with pytest.raises(ConfigurationError, match="serializer='pickle'"):
        register_workflow_processor(app_with(), serializer="pickle")


def test_pickle_can_be_allowed_explicitly():
    task = register_workflow_processor(
        app_with(accept_content=["pickle", "json"]), allow_pickle=True
    )
    assert task.name == "dyrygent.processor"


def test_registering_twice_returns_the_same_task():
    app = app_with()
    assert register_workflow_processor(app) is register_workflow_processor(app)


def test_processor_defaults_make_it_survive_worker_loss():
    task = register_workflow_processor(app_with())
    assert task.acks_late and task.reject_on_worker_lost and task.ignore_result
    assert task.max_retries is None  # a driver is never dropped by Celery's default of 3
    assert task.serializer == "json"


def test_a_workflow_without_result_backend_is_a_clear_error():
    from celery import chain

    from dyrygent import Workflow

    app = Celery("nobackend", broker="memory://", set_as_current=False)
    register_workflow_processor(app)
    wf = Workflow(app=app)
    wf.add_celery_canvas(chain(app.signature("a.b").set(task_id="x1")))
    with pytest.raises(ConfigurationError, match="needs a result backend.*result_backend"):
        wf.apply_async()
