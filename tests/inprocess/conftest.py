"""One in-process app (memory broker and backend, thread worker) per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery import Celery

from dyrygent.testing import in_process
from tests.inprocess.tasks import register_tasks


@pytest.fixture(scope="module")
def app() -> Iterator[Celery]:
    """An in-process app with the tasks of tasks.py and its worker running."""
    with in_process(register_tasks) as app:
        yield app
