"""The integration tests' app with dyrygent.tasks' processor and adopt_celery_dyrygent=True:
the worker that takes over celery-dyrygent's workflows in the adoption test."""

from __future__ import annotations

import functools
import os

import workerapp

from dyrygent.tasks import register_workflow_processor

# workerapp.make_app registers the processor through this module-level name: use the
# celery-dyrygent-compatible registration, with adoption, and make_app's own settings
workerapp.register_workflow_processor = functools.partial(
    register_workflow_processor, adopt_celery_dyrygent=True
)
app = workerapp.make_app(
    os.environ["DYRYGENT_TEST_BROKER"], os.environ["DYRYGENT_TEST_BACKEND"], name="adoptapp"
)
