"""Fixtures: a private redis-server, real `celery worker` subprocesses, the ledger.

The Redis-brokered worker is started once per session (two prefork processes); tests that
kill workers start their own. RabbitMQ tests get a fresh vhost on the local server.

Every test under this folder carries the ``integration`` marker (added at collection below:
pytest ignores a ``pytestmark`` set in a conftest), so ``-m "not integration"`` leaves them out.
"""

from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tests.django_project.fixtures import django_app, django_env  # noqa: E402, F401 (fixtures)
from tests.harness import Ledger, PostgresDatabase, RabbitVhost, RedisServer, Worker  # noqa: E402

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before pytest's own hook deselects by ``-m``
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test collected from this folder ``integration``.

    A conftest's hook sees the whole session's items, so only those under this folder are
    marked.
    """
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer()
    yield server
    # Results no test holds any more unsubscribe when collected; collect them while Redis is
    # up: Celery before 5.7 reconnects (for minutes) from AsyncResult.__del__ otherwise,
    # and the session hangs at exit
    gc.collect()
    server.stop()


@pytest.fixture(scope="session")
def env(redis_server):
    return {
        "DYRYGENT_TEST_BROKER": redis_server.url(0),
        "DYRYGENT_TEST_BACKEND": redis_server.url(1),
        "DYRYGENT_TEST_LEDGER": redis_server.url(2),
    }


@pytest.fixture(scope="session")
def app(env):
    os.environ.update(env)
    import workerapp

    return workerapp.make_app(
        env["DYRYGENT_TEST_BROKER"], env["DYRYGENT_TEST_BACKEND"], name="client"
    )


@pytest.fixture(scope="session")
def worker(env, app):
    w = Worker(env)
    try:
        w.wait_ready(app)
        yield w
    finally:
        w.stop()


@pytest.fixture(scope="session")
def t(app, worker):
    """The test tasks on the Redis-brokered app, with a worker running."""
    import workerapp

    return workerapp.Tasks(app)


@pytest.fixture
def ledger(redis_server):
    import redis

    led = Ledger(redis.Redis.from_url(redis_server.url(2)))
    led.clear()
    return led


def app_with_worker(broker: str, backend: str, ledger: str, name: str, queue: str = "celery"):
    """A client app and a running worker on ``broker`` and ``backend``: yields the app."""
    import workerapp

    env = {
        "DYRYGENT_TEST_BROKER": broker,
        "DYRYGENT_TEST_BACKEND": backend,
        "DYRYGENT_TEST_LEDGER": ledger,
        "DYRYGENT_TEST_QUEUE": queue,
    }
    app = workerapp.make_app(broker, backend, name=f"{name}-client", queue=queue)
    w = Worker(env, name=name)
    try:
        w.wait_ready(app)
        yield app
    finally:
        w.stop()


@pytest.fixture(scope="session")
def rabbit_app(redis_server):
    if not RabbitVhost.available():
        pytest.skip("no RabbitMQ server on 127.0.0.1:5672")
    vhost = RabbitVhost()
    try:
        yield from app_with_worker(vhost.url, redis_server.url(3), redis_server.url(2), "rabbit")
    finally:
        vhost.delete()


@pytest.fixture(scope="session")
def rt(rabbit_app):
    """The test tasks on the RabbitMQ-brokered app, with a worker running."""
    import workerapp

    return workerapp.Tasks(rabbit_app)


@pytest.fixture(scope="session")
def postgres():
    """A fresh database on the PostgreSQL server at 127.0.0.1:5432, dropped at the end."""
    if not PostgresDatabase.available():
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
    db = PostgresDatabase()
    yield db
    db.drop()


@pytest.fixture(scope="session")
def db_app(redis_server, postgres):
    """An app on the Redis broker with Celery's database result backend on PostgreSQL,
    and a worker for it."""
    yield from app_with_worker(
        redis_server.url(8), "db+" + postgres.url, redis_server.url(2), "db", queue="db"
    )


@pytest.fixture(scope="session")
def dt(db_app):
    """The test tasks on the database-backed app, with a worker running."""
    import workerapp

    return workerapp.Tasks(db_app)
