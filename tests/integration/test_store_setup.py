"""Choosing a store for a Celery app, store errors mapped to dyrygent's, and records stored
by the previous release."""

from __future__ import annotations

import socket

import kombu.exceptions
import pytest
import redis as redis_lib
import sqlalchemy as sa
from celery import Celery
from celery.backends.base import BaseBackend
from redis.backoff import NoBackoff
from redis.retry import Retry

from dyrygent import (
    BrokerUnavailableError,
    ConfigurationError,
    StoreUnavailableError,
    TransientError,
)
from dyrygent.core.states import NodeState, WorkflowStatus
from dyrygent.engine.failures import broker_calls
from dyrygent.engine.stores import KEEP_AFTER, ClaimStatus, store_for
from dyrygent.engine.stores.kv import KVStore
from dyrygent.engine.stores.redis import RedisStore
from dyrygent.engine.stores.sql import SQLStore


class DatabaseBackend(BaseBackend):
    """Named like Celery's SQLAlchemy backend, but another class (django-celery-results'
    ``django-db`` is one)."""


def closed_port() -> int:
    """A local TCP port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "backend, kind",
    [
        ("redis://127.0.0.1:6379/9", RedisStore),
        ("db+sqlite:///:memory:", SQLStore),
        ("cache+memory://", KVStore),
    ],
)
def test_the_store_follows_the_backend_class(backend, kind):
    # Given an app with one of the supported result backends (nothing is connected yet)
    app = Celery("sel", backend=backend, set_as_current=False)
    # When its store is chosen, Then it is the store for that backend
    assert type(store_for(app)) is kind


def test_a_backend_only_named_database_backend_is_refused_with_the_supported_list():
    # Given an app whose backend class is named DatabaseBackend but is not Celery's
    app = Celery("sel", backend=f"{__name__}:DatabaseBackend", set_as_current=False)
    # When its store is chosen, Then the error names the class and what is supported
    with pytest.raises(
        ConfigurationError,
        match=r"result backend \S*test_store_setup\.DatabaseBackend: use Redis .*db\+postgresql.*"
        r"cache\+memory://",
    ):
        store_for(app)


def test_an_app_without_a_result_backend_is_refused():
    app = Celery("sel", set_as_current=False)
    with pytest.raises(ConfigurationError, match="has none: set result_backend"):
        store_for(app)


def test_redis_down_raises_store_unavailable_with_the_original_error():
    # Given a Redis store on a port nothing listens on
    client = redis_lib.Redis(
        port=closed_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    store = RedisStore(client)
    # When a processor claims a workflow, Then the error is ours, naming the call
    with pytest.raises(
        StoreUnavailableError, match=r"RedisStore\.claim\('wf'\): the workflow store did not"
    ) as caught:
        store.claim("wf", 0, "m0", wake=False)
    # and it carries and chains redis-py's, and is transient
    assert isinstance(caught.value, TransientError)
    assert isinstance(caught.value.error, redis_lib.ConnectionError)
    assert caught.value.__cause__ is caught.value.error


def test_a_database_down_raises_store_unavailable():
    store = SQLStore(f"postgresql+psycopg2://postgres@127.0.0.1:{closed_port()}/nothing")
    with pytest.raises(StoreUnavailableError, match=r"SQLStore\.status\('wf'\)") as caught:
        store.status("wf")
    assert isinstance(caught.value.error, sa.exc.OperationalError)


def test_an_error_that_would_not_pass_is_not_mapped(redis_server):
    # Given a Redis store whose meta key of a workflow holds a string (not a hash)
    client = redis_lib.Redis.from_url(redis_server.url(5))
    client.flushdb()
    store = RedisStore(client)
    client.set(store.prefix + "wf:m", "not a hash")
    # When it is claimed, Then the script's error is redis-py's own: retrying will not help
    with pytest.raises(redis_lib.ResponseError, match="WRONGTYPE"):
        store.claim("wf", 0, "m0", wake=False)


def test_a_workflow_stored_by_the_previous_release_loads_and_runs_on_redis(redis_server):
    # Given the records the previous release wrote: no created, no event log, no index
    client = redis_lib.Redis.from_url(redis_server.url(5))
    client.flushdb()
    store = RedisStore(client)
    p = store.prefix + "old"
    client.set(p + ":g", b"graph", ex=3600)
    client.set(p + ":s", bytes(3), ex=3600)
    meta = {"gen": 0, "holder": "", "attempts": 0, "dirty": "0", "status": "running"}
    client.hset(p + ":m", mapping={**meta, "header": b"h", "deadline": 2**40})
    client.expire(p + ":m", 3600)
    # When it is claimed and committed to its end
    assert store.claim("old", 0, "m0", wake=False).status is ClaimStatus.OK
    store.commit("old", "m0", {2: NodeState.SUCCEEDED}, 1, WorkflowStatus.SUCCEEDED)
    # Then it reads as before, stored as text, and its new event log expires with it
    info = store.status("old")
    assert (info.status, info.created, info.states) == (WorkflowStatus.SUCCEEDED, None, b"\0\0\2")
    assert client.hget(p + ":m", "status") == b"succeeded"
    assert [(e.node, e.old, e.new) for e in store.history("old")] == [(2, 0, 2)]
    assert 0 < client.ttl(p + ":e") <= 3600


def test_a_database_table_of_the_previous_release_is_upgraded_in_place(tmp_path):
    # Given a dyrygent_workflow table and row as the previous release created them
    url = f"sqlite:///{tmp_path}/old.db"
    old = sa.MetaData()
    blob, seconds = sa.LargeBinary(), sa.Float(precision=53)
    table = sa.Table(
        "dyrygent_workflow",
        old,
        *(sa.Column(c, sa.String(155), primary_key=c == "wf") for c in ("wf", "holder", "status")),
        *(sa.Column(c, sa.Integer) for c in ("version", "gen", "attempts")),
        sa.Column("dirty", sa.Boolean),
        *(sa.Column(c, seconds) for c in ("held", "deadline", "expires")),
        *(sa.Column(c, blob) for c in ("header", "graph", "states")),
    )
    engine = sa.create_engine(url)
    old.create_all(engine)
    row = dict(wf="old", holder="", status="running", version=0, gen=0, attempts=0)
    row.update(dirty=False, deadline=2**40, expires=2**40, graph=b"g", states=bytes(2))
    with engine.begin() as conn:
        conn.execute(table.insert().values(**row, header=b"h"))
    engine.dispose()
    # When this release's store opens it and runs the workflow to its end
    store = SQLStore(url)
    assert store.claim("old", 0, "m0", wake=False).status is ClaimStatus.OK
    store.commit("old", "m0", {0: NodeState.FAILED}, 1, WorkflowStatus.FAILED)
    # Then the workflow reads as before (no creation time), and is not in the index
    info = store.status("old")
    assert (info.status, info.created, type(info.ended)) == (WorkflowStatus.FAILED, None, float)
    assert [(e.node, e.new) for e in store.history("old")] == [(0, NodeState.FAILED)]
    assert store.load("old") == (b"g", b"h")
    assert store.list_workflows() == []
    # while new workflows are listed
    store.create("new", b"g", b"h", 1, 3600)
    assert [i.id for i in store.list_workflows()] == ["new"]


def test_broker_errors_that_may_pass_are_mapped_and_others_are_not():
    # Given kombu's error for a publish that found no broker
    lost = kombu.exceptions.OperationalError("[Errno 111] Connection refused")
    # When it is raised inside broker_calls, Then it is ours, chained, naming the call
    with pytest.raises(BrokerUnavailableError, match=r"publish node n1: the broker") as caught:
        with broker_calls("publish node n1"):
            raise lost
    assert caught.value.error is lost and caught.value.__cause__ is lost
    # and an error that retrying will not fix passes unchanged
    with pytest.raises(kombu.exceptions.EncodeError):
        with broker_calls("publish node n1"):
            raise kombu.exceptions.EncodeError("cannot serialize")


def test_redis_prunes_index_entries_older_than_the_longest_ttl_at_create(redis_server):
    # Given an index holding a workflow created before the longest TTL, and a recent one
    client = redis_lib.Redis.from_url(redis_server.url(5))
    client.flushdb()
    store = RedisStore(client)
    now = float(client.time()[0])
    client.zadd(store.index_key, {"ancient": now - 3 * 86400, "recent": now - 60})
    # When a workflow of one hour is created
    store.create("wf", b"g", b"h", 1, 3600)
    # Then the entry past its TTL (an hour and KEEP_AFTER) is gone, the recent one stays,
    # and every record of the new workflow expires with it
    assert client.zrange(store.index_key, 0, -1) == [b"recent", b"wf"]
    ttl = 3600 + KEEP_AFTER
    for kind in "msge":  # (no join counters: no ":c" key)
        assert ttl - 5 <= client.ttl(f"{store.prefix}wf:{kind}") <= ttl, kind
