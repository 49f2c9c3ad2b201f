"""Settings of the test Django project: django-celery-results as the result backend
(``CELERY_RESULT_BACKEND = "django-db"``) on SQLite or PostgreSQL.

Configured from the environment, so the test client and the ``celery worker`` subprocess
agree: DYRYGENT_DJANGO_DB picks the database alias ("default": SQLite at
DYRYGENT_DJANGO_SQLITE; "pg": the PostgreSQL database DYRYGENT_DJANGO_PG on 127.0.0.1:5432),
DYRYGENT_TEST_BROKER the broker.
"""

from __future__ import annotations

import os

SECRET_KEY = "dyrygent-tests-only"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django_celery_results",
    "tests.django_project.shop",
]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DYRYGENT_DJANGO_SQLITE", "/tmp/dyrygent-django.sqlite3"),
        # two worker processes write results at once: take the write lock when a
        # transaction begins, so no transaction has to upgrade its lock (Django 5.1+)
        "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
    },
    "pg": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("DYRYGENT_DJANGO_PG", "dyrygent_django"),
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "5432",
    },
}
DATABASE_ROUTERS = ["tests.django_project.djproj.routers.SelectedDatabase"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

CELERY_BROKER_URL = os.environ.get("DYRYGENT_TEST_BROKER", "redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = "django-db"
CELERY_TASK_DEFAULT_QUEUE = "django"
CELERY_TASK_TRACK_STARTED = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
