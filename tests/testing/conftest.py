"""Celery's pytest fixtures for these tests. A project enables them with
``pytest_plugins = ("celery.contrib.pytest",)`` in its root conftest.py; here they are
imported, so the rest of the suite runs without Celery's plugin."""

from __future__ import annotations

from celery.contrib.pytest import (  # noqa: F401 (fixtures)
    celery_app,
    celery_config,
    celery_enable_logging,
    celery_includes,
    celery_parameters,
    celery_worker,
    celery_worker_parameters,
    celery_worker_pool,
    use_celery_app_trap,
)
