"""Pytest fixtures for the Django project: its settings for this test session, its databases
migrated (django-celery-results' migrations), and a real ``celery -A
tests.django_project.djproj worker`` subprocess on one database at a time."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest

from tests.harness import PostgresDatabase, Worker, wait_for

#: Database aliases of tests/django_project/djproj/settings.py by the name tests use.
ALIASES = {"sqlite": "default", "postgresql": "pg"}


@pytest.fixture(scope="session")
def django_env(redis_server: Any) -> Iterator[dict[str, str]]:
    """Configure Django for this process (once: Django reads its settings once) with a
    SQLite file and, when the server is there, a fresh PostgreSQL database; yields the
    environment the workers need. Skips without Django or django-celery-results."""
    pytest.importorskip("django")
    pytest.importorskip("django_celery_results")
    postgres = PostgresDatabase() if PostgresDatabase.available() else None
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.django_project.djproj.settings",
        "DYRYGENT_DJANGO_SQLITE": os.path.join(tempfile.mkdtemp(), "django.sqlite3"),
        "DYRYGENT_DJANGO_PG": postgres.name if postgres else "unavailable",
        "DYRYGENT_TEST_BROKER": redis_server.url(10),
    }
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import django
    from django.core.management import call_command

    django.setup()
    import tests.django_project.djproj.celery  # noqa: F401 (sets DJANGO_SETTINGS_MODULE)

    # Django has read its settings: put the environment back, so that Celery apps and workers
    # the other tests start later get no Django fixup and their own broker
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    for alias in ["default"] + (["pg"] if postgres else []):
        call_command("migrate", database=alias, verbosity=0)
    try:
        yield {**env, "postgres": "1" if postgres else ""}
    finally:
        from django.db import connections

        connections.close_all()
        if postgres is not None:
            postgres.drop()


def select_database(env: dict[str, str], name: str) -> str:
    """Point this process's Django router at database ``name`` (sqlite or postgresql);
    returns its alias. Skips when PostgreSQL is missing."""
    if name == "postgresql" and not env["postgres"]:
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
    alias = ALIASES[name]
    os.environ["DYRYGENT_DJANGO_DB"] = alias
    return alias


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def django_app(request: Any, django_env: dict[str, str]) -> Iterator[Any]:
    """The Django project's Celery app, with a worker running on the database of the param
    (one at a time: pytest tears the first down before starting the second)."""
    alias = select_database(django_env, request.param)
    from tests.django_project.djproj.celery import make_app
    from tests.django_project.shop import tasks  # noqa: F401 (registers the shop's tasks)

    app = make_app()  # its own processor, whose store is on this database
    app.set_current()
    worker_env = {k: v for k, v in django_env.items() if k != "postgres"}
    worker_env["DYRYGENT_DJANGO_DB"] = alias
    worker = Worker(worker_env, app="tests.django_project.djproj", name=f"django-{alias}")
    try:
        wait_for(lambda: _ping(app, worker), 60, "the Django worker to answer a ping", interval=0.2)
        app.database_alias = alias
        yield app
    finally:
        worker.stop()


def _ping(app: Any, worker: Worker) -> bool:
    if worker.proc.poll() is not None:
        raise RuntimeError(f"the Django worker exited: {worker.tail()}")
    try:
        return app.send_task("shop.ping").get(timeout=2) == "pong"
    except Exception:  # not up yet: TimeoutError, a connection refused
        return False
