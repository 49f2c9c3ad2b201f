"""The integration tests' app with celery-dyrygent 0.8.0's own processor registered: the
worker the adoption test starts workflows on, then stops mid-run."""

from __future__ import annotations

import os

import workerapp
from celery_dyrygent.tasks import register_workflow_processor

app = workerapp.make_app(
    os.environ["DYRYGENT_TEST_BROKER"], os.environ["DYRYGENT_TEST_BACKEND"], name="cdworkerapp"
)
register_workflow_processor(app, shared=False)  # (its default, shared, reaches every app)
