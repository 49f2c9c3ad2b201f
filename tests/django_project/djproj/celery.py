"""The project's Celery app, the way Celery's Django guide writes it, plus dyrygent."""

from __future__ import annotations

import os

from celery import Celery

from dyrygent import register_workflow_processor

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_project.djproj.settings")


def make_app() -> Celery:
    """The app from Django's settings (CELERY_*), its apps' tasks and the processor. (A
    function so that the test client makes one per database it runs on.)"""
    app = Celery("djproj")
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.autodiscover_tasks()
    # short backup ticks: tests should not wait the production defaults
    register_workflow_processor(app, max_interval=0.5, idle_interval=2, lease=2)
    return app


app = make_app()
