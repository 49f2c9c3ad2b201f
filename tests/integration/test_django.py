"""A Django project on django-celery-results (``CELERY_RESULT_BACKEND = "django-db"``) runs
workflows end to end, on SQLite and on PostgreSQL, with a real ``celery worker`` subprocess
(tests/django_project). The store is dyrygent's SQL store on the database the results go to.
"""

from __future__ import annotations

from typing import Any

import pytest
from celery import Celery, chain, chord

from dyrygent import Workflow
from dyrygent.engine.stores import store_for
from dyrygent.engine.stores.django import sqlalchemy_url
from dyrygent.engine.stores.sql import SQLStore
from dyrygent.errors import ConfigurationError

pytestmark = pytest.mark.integration
TIMEOUT = 30


def shop(app: Any) -> Any:
    """The shop's tasks on ``app`` by short name."""

    class Shop:
        price = app.tasks["shop.price"]
        total = app.tasks["shop.total"]
        discount = app.tasks["shop.discount"]
        reserve = app.tasks["shop.reserve"]
        results_stored = app.tasks["shop.results_stored"]

    return Shop


def order(s: Any) -> Any:
    return chain(
        chord([s.price.si("apple", 2), s.price.si("pear", 1)], s.total.s()), s.discount.s(10)
    )


def test_a_workflow_runs_end_to_end_on_django_db(django_app: Any) -> None:
    # Given the project's app (result_backend "django-db") and a worker on its database
    s = shop(django_app)
    native = order(s).apply_async().get(timeout=TIMEOUT)
    # When an order canvas runs through dyrygent
    wf = Workflow(app=django_app)
    wf.add_celery_canvas(order(s))
    result = wf.apply_async()
    # Then it returns native's value, every node succeeded, and the nodes' results are rows
    # Django's ORM sees
    assert result.get(timeout=TIMEOUT) == native == 10
    assert set(result.states().values()) == {"SUCCEEDED"}
    from django_celery_results.models import TaskResult

    assert TaskResult.objects.filter(task_id__in=[n.id for n in wf.nodes]).count() == 4
    assert s.results_stored.delay().get(timeout=TIMEOUT) >= 4  # the worker's ORM sees them


def test_a_failed_node_fails_the_workflow_with_its_exception(django_app: Any) -> None:
    # Given a chain whose middle step raises
    s = shop(django_app)
    wf = Workflow(app=django_app)
    wf.add_celery_canvas(chain(s.price.si("apple", 1), s.reserve.si("apple"), s.total.s()))
    # When it runs
    result = wf.apply_async()
    # Then get() raises the node's own exception, and the last step never ran
    with pytest.raises(Exception, match="no apple left") as raised:
        result.get(timeout=TIMEOUT)
    assert type(raised.value).__name__ == "OutOfStock"
    assert list(result.states().values()) == ["SUCCEEDED", "FAILED", "UPSTREAM_FAILED"]


def test_the_store_lives_in_the_results_database(django_app: Any) -> None:
    # Given the project's app on one of its databases
    from django.db import connections

    connection = connections[django_app.database_alias]
    # When dyrygent picks its store
    store = store_for(django_app)
    # Then it is the SQL store on that same database, its tables next to Django's
    assert isinstance(store, SQLStore)
    assert store.engine.dialect.name == connection.vendor
    assert str(connection.settings_dict["NAME"]) in store.url
    assert {"dyrygent_workflow", "django_celery_results_taskresult"} <= set(
        connection.introspection.table_names()
    )


def test_django_cache_is_refused_naming_the_backend(django_env: Any) -> None:
    # Given an app whose results go to Django's cache
    app = Celery("cache", backend="django-cache", set_as_current=False)
    # When dyrygent picks a store, Then it refuses, naming the backend and the supported ones
    with pytest.raises(ConfigurationError, match=r"django-cache.*django-db"):
        store_for(app)


# -- Django database settings to SQLAlchemy URLs (no server needed) -----------------------------


def test_postgresql_settings_become_a_url_with_libpq_options() -> None:
    # Given Django's PostgreSQL settings with a libpq option and a Django-only one
    settings = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "shop",
        "USER": "web",
        "PASSWORD": "s3cret",
        "HOST": "db.internal",
        "PORT": "6432",
        "OPTIONS": {"sslmode": "require", "isolation_level": 1},
    }
    # When they are turned into a SQLAlchemy URL
    url, options = sqlalchemy_url(settings)
    # Then the URL names the same server and database, and only libpq options are passed
    assert url.render_as_string(hide_password=False) == (
        "postgresql+psycopg2://web:s3cret@db.internal:6432/shop"
    )
    assert options == {"connect_args": {"sslmode": "require"}}


def test_sqlite_settings_become_a_file_url() -> None:
    url, options = sqlalchemy_url(
        {"ENGINE": "django.db.backends.sqlite3", "NAME": "/srv/db.sqlite3", "OPTIONS": {}}
    )
    assert (str(url), options) == ("sqlite:////srv/db.sqlite3", {})


def test_an_in_memory_sqlite_database_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="in-memory SQLite database"):
        sqlalchemy_url({"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"})


def test_an_unknown_database_engine_is_refused_naming_it() -> None:
    with pytest.raises(ConfigurationError, match=r"engine 'django\.db\.backends\.oracle'.*use"):
        sqlalchemy_url({"ENGINE": "django.db.backends.oracle", "NAME": "x"})
