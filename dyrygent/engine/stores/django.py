"""The workflow store of a Django project on django-celery-results (``result_backend =
"django-db"``): the SQLAlchemy store (:class:`~dyrygent.engine.stores.sql.SQLStore`) on the
same database the results are written to, with dyrygent's tables next to Django's.

Why not a second store on Django's ORM: the fence (compare-and-set on a version column) is
the part that must be right under concurrency, and :class:`SQLStore` is the one the store
contract suite proves on PostgreSQL, SQLite and MySQL; a copy on the ORM would be a second
implementation to keep right. The cost is SQLAlchemy as a dependency
(``pip install dyrygent[django]``) and tables Django's migrations do not list (they are
created on first use, as Celery's own database backend creates its tables).
"""

from __future__ import annotations

from typing import Any

from dyrygent.errors import ConfigurationError

__all__ = ["DJANGO_ENGINES", "django_store", "sqlalchemy_url"]

#: Django database engines -> SQLAlchemy dialects (the driver Django itself uses).
DJANGO_ENGINES = {
    "django.db.backends.postgresql": "postgresql",
    "django.db.backends.postgresql_psycopg2": "postgresql+psycopg2",
    "django.db.backends.sqlite3": "sqlite",
    "django.db.backends.mysql": "mysql+mysqldb",
}
#: Django's PostgreSQL OPTIONS that are not libpq connection parameters.
_DJANGO_ONLY_OPTIONS = {"isolation_level", "pool", "server_side_binding", "assume_role"}


def _postgresql_driver() -> str:
    """psycopg2 if importable, else psycopg (3): the one Django would use."""
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "postgresql+psycopg"
    return "postgresql+psycopg2"


def sqlalchemy_url(settings: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The SQLAlchemy URL and engine options for one Django ``DATABASES`` entry.

    Raises ConfigurationError for a database engine dyrygent has no dialect for, or an
    in-memory SQLite database (other processes cannot see it)."""
    import sqlalchemy as sa

    engine = settings.get("ENGINE", "")
    dialect = DJANGO_ENGINES.get(engine)
    if dialect is None:
        raise ConfigurationError(
            f"dyrygent cannot keep workflow state in the Django database engine {engine!r}: "
            f"use one of {sorted(DJANGO_ENGINES)} for the database django-celery-results "
            f"writes to"
        )
    name = str(settings.get("NAME") or "")
    options = dict(settings.get("OPTIONS") or {})
    if dialect == "sqlite":
        if not name or name == ":memory:" or name.startswith("file::memory:"):
            raise ConfigurationError(
                "dyrygent cannot keep workflow state in an in-memory SQLite database (the "
                "workers cannot see it): give DATABASES a file NAME"
            )
        return sa.engine.URL.create("sqlite", database=name), {}
    if dialect == "postgresql":
        dialect = _postgresql_driver()
    connect_args = {k: v for k, v in options.items() if k not in _DJANGO_ONLY_OPTIONS}
    url = sa.engine.URL.create(
        dialect,
        username=settings.get("USER") or None,
        password=settings.get("PASSWORD") or None,
        host=settings.get("HOST") or None,
        port=int(settings["PORT"]) if settings.get("PORT") else None,
        database=name or None,
    )
    return url, ({"connect_args": connect_args} if connect_args else {})


def django_store(backend: Any) -> Any:
    """The SQLStore on the database django-celery-results' ``backend`` writes to (the one
    Django's router picks for its TaskResult model).

    Raises ConfigurationError when SQLAlchemy is missing or the database cannot be used."""
    try:
        from dyrygent.engine.stores.sql import SQLStore
    except ImportError as exc:
        raise ConfigurationError(
            f"dyrygent keeps workflow state for result_backend='django-db' with SQLAlchemy, "
            f"which is not importable ({exc}): pip install 'dyrygent[django]'"
        ) from exc
    from django.db import connections, router

    alias = router.db_for_write(backend.TaskModel) or "default"
    url, engine_options = sqlalchemy_url(connections[alias].settings_dict)
    return SQLStore(url.render_as_string(hide_password=False), engine_options)
