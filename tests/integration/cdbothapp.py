"""A misconfigured worker for the adoption tests: celery-dyrygent's own processor still
registered (its default, a shared task) next to dyrygent's adopter."""

from __future__ import annotations

import os

import workerapp
from celery_dyrygent.tasks import register_workflow_processor as cd_register

from dyrygent.tasks import register_workflow_processor

app = workerapp.make_app(
    os.environ["DYRYGENT_TEST_BROKER"], os.environ["DYRYGENT_TEST_BACKEND"], name="cdbothapp"
)
cd_register(app)
register_workflow_processor(app, adopt_celery_dyrygent=True)
