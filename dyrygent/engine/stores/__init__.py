"""The workflow store: where a workflow lives between ticks, next to the node results in
the result backend, and the factory that picks one for a Celery app.

Modules: :mod:`.base` (the interface and the claim rule), :mod:`.events` (the event log's
format), :mod:`.redis` with :mod:`.redis_lua` (Redis), :mod:`.sql` with :mod:`.sql_schema`
(Celery's database backend, SQLAlchemy), :mod:`.kv` (other key-value backends). The
backend modules are imported only when chosen (SQLAlchemy is optional).
"""

from __future__ import annotations

from typing import Any

from dyrygent.engine.backends import loaded_class
from dyrygent.engine.stores.base import (
    DEFAULT_LEASE,
    KEEP_AFTER,
    PREFIX,
    Claim,
    ClaimStatus,
    Store,
    WorkflowRecord,
    claim_rule,
)
from dyrygent.engine.stores.events import NodeEvent
from dyrygent.errors import ConfigurationError

__all__ = [
    "DEFAULT_LEASE",
    "KEEP_AFTER",
    "PREFIX",
    "Claim",
    "ClaimStatus",
    "NodeEvent",
    "Store",
    "WorkflowRecord",
    "claim_rule",
    "records_keep",
    "store_for",
]

_SUPPORTED = (
    "Redis (result_backend='redis://...'), Celery's database backend "
    "(result_backend='db+postgresql://...', db+mysql://, db+sqlite://), django-celery-results' "
    "database backend (result_backend='django-db', on PostgreSQL, MySQL or SQLite) or another "
    "key-value backend such as cache+memory://"
)


def _database_backend() -> type | None:
    """Celery's SQLAlchemy DatabaseBackend class, or None if SQLAlchemy is not importable
    (then no backend can be one)."""
    try:
        from celery.backends.database import DatabaseBackend
    except ImportError:
        return None
    found: type | None = DatabaseBackend
    return found


def store_for(app: Any) -> Store:
    """The store for ``app``'s result backend, chosen by the backend's class (isinstance).

    Raises ConfigurationError when the backend cannot hold workflow state (no backend,
    django-celery-results' ``django-cache``, or one of another kind), naming it and the
    supported ones.
    """
    from celery.backends.base import BaseKeyValueStoreBackend, DisabledBackend
    from celery.backends.redis import RedisBackend

    backend = app.backend
    if isinstance(backend, RedisBackend):
        from dyrygent.engine.stores.redis import RedisStore

        return RedisStore(backend.client)
    database = _database_backend()
    if database is not None and isinstance(backend, database):
        from dyrygent.engine.stores.sql import SQLStore

        return SQLStore.for_backend(backend)
    django_db = loaded_class("django_celery_results.backends.database", "DatabaseBackend")
    if django_db is not None and isinstance(backend, django_db):
        from dyrygent.engine.stores.django import django_store

        store: Store = django_store(backend)
        return store
    django_cache = loaded_class("django_celery_results.backends.cache", "CacheBackend")
    if django_cache is not None and isinstance(backend, django_cache):
        # a key-value backend, but on Django's cache: no atomic fence across processes
        raise ConfigurationError(
            "dyrygent cannot keep workflow state in django-celery-results' cache backend "
            "(result_backend='django-cache'): Django's cache has no atomic compare-and-set "
            f"across processes. Use {_SUPPORTED}"
        )
    if isinstance(backend, BaseKeyValueStoreBackend):
        from dyrygent.engine.stores.kv import KVStore

        return KVStore(backend)
    if isinstance(backend, DisabledBackend):
        raise ConfigurationError(
            "dyrygent needs a result backend to see node outcomes, and this Celery app has "
            "none: set result_backend (e.g. 'redis://localhost:6379/1')"
        )
    kind = type(backend)
    raise ConfigurationError(
        f"dyrygent cannot keep workflow state in the result backend "
        f"{kind.__module__}.{kind.__qualname__}: use {_SUPPORTED}"
    )


#: How long records are kept after a workflow's maximum age when the app keeps results
#: forever (``result_expires=None``): ten years.
_FOREVER = 10 * 365 * 24 * 3600


def records_keep(app: Any) -> float:
    """Seconds a workflow's records outlive its maximum age: as long as the app's result
    backend keeps results (``result_expires``; a day when unset, as Celery's default)."""
    expires = app.conf.result_expires
    if expires is None:
        return _FOREVER
    seconds = expires.total_seconds() if hasattr(expires, "total_seconds") else float(expires)
    return seconds if seconds > 0 else KEEP_AFTER
