"""The generation fence, on a real Redis (Lua), SQLite, PostgreSQL and MariaDB
(compare-and-set), and on the in-process key-value store."""

from __future__ import annotations

import pytest
import redis as redis_lib
from celery import Celery

from dyrygent.core.states import WorkflowStatus
from dyrygent.engine.stores import ClaimStatus, sql_schema
from dyrygent.engine.stores.kv import KVStore
from dyrygent.engine.stores.redis import RedisStore
from dyrygent.engine.stores.sql import SQLStore


@pytest.fixture(scope="module")
def mariadb():
    """A fresh database on the MariaDB/MySQL server at 127.0.0.1:3306 (root, no password)."""
    import os
    import socket
    import time

    try:
        import pymysql  # noqa: F401

        socket.create_connection(("127.0.0.1", 3306), timeout=1).close()
    except (ImportError, OSError):
        pytest.skip("no MariaDB/MySQL server on 127.0.0.1:3306, or no pymysql")
    import sqlalchemy as sa

    name = f"dyrygent_{os.getpid()}_{int(time.time() * 1000)}"
    admin = sa.create_engine("mysql+pymysql://root@127.0.0.1:3306/", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    yield f"mysql+pymysql://root@127.0.0.1:3306/{name}"
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
    admin.dispose()


@pytest.fixture(params=["redis", "kv", "sqlite", "postgresql", "mysql"])
def store(request, redis_server, tmp_path):
    if request.param == "redis":
        client = redis_lib.Redis.from_url(redis_server.url(5))
        client.flushdb()
        return RedisStore(client)
    if request.param == "sqlite":
        return SQLStore(f"sqlite:///{tmp_path}/store.db")
    if request.param in ("postgresql", "mysql"):
        store = SQLStore(
            request.getfixturevalue("postgres").url
            if request.param == "postgresql"
            else request.getfixturevalue("mariadb")
        )
        with store.engine.begin() as conn:  # a fresh table for each test
            for table in (sql_schema.workflows, sql_schema.join_table, sql_schema.event_table):
                conn.execute(table.delete())
        return store
    app = Celery("kv", backend="cache+memory://", set_as_current=False)
    return KVStore(app.backend)


def make(store, size=4, max_age=3600):
    store.create("wf", b"graph", b"header", size, max_age)


def test_first_claim_gets_the_states(store):
    make(store)
    claim = store.claim("wf", 0, "m0", wake=False)
    assert (claim.status, claim.gen, claim.attempts, claim.states) == (ClaimStatus.OK, 0, 1, bytes(4))


def test_commit_writes_only_changes_and_advances_the_generation(store):
    make(store)
    store.claim("wf", 0, "m0", wake=False)
    assert store.commit("wf", "m0", {1: 1, 2: 4}, 1, WorkflowStatus.RUNNING) is False
    claim = store.claim("wf", 1, "m1", wake=False)
    assert (claim.status, claim.gen, claim.states) == (ClaimStatus.OK, 1, bytes([0, 1, 4, 0]))


def test_stale_early_and_busy(store):
    make(store)
    assert store.claim("wf", 0, "m0", wake=False).status == ClaimStatus.OK
    # a duplicate of generation 0 with another id, while m0 ticks: busy
    assert store.claim("wf", 0, "dup", wake=False).status == ClaimStatus.BUSY
    # the next generation, published before m0 committed: early (retry shortly)
    assert store.claim("wf", 1, "m1", wake=False).status == ClaimStatus.EARLY
    # a wake-up while m0 ticks: busy, and m0 learns it at commit
    assert store.claim("wf", None, "w1", wake=True).status == ClaimStatus.BUSY
    assert store.commit("wf", "m0", {}, 1, WorkflowStatus.RUNNING) is True
    # the duplicate of generation 0 arriving later: stale
    assert store.claim("wf", 0, "dup", wake=False).status == ClaimStatus.STALE
    assert store.claim("wf", 1, "m1", wake=False).status == ClaimStatus.OK


def test_a_wake_up_claims_any_generation_when_free(store):
    make(store)
    store.claim("wf", 0, "m0", wake=False)
    store.commit("wf", "m0", {}, 1, WorkflowStatus.RUNNING)
    claim = store.claim("wf", None, "w1", wake=True)
    assert (claim.status, claim.gen) == (ClaimStatus.OK, 1)
    store.commit("wf", "w1", {}, 2, WorkflowStatus.RUNNING)
    # the driver message of generation 1 is now stale: exactly one driver goes on
    assert store.claim("wf", 1, "m1", wake=False).status == ClaimStatus.STALE


def test_a_redelivered_holder_takes_its_tick_over_past_the_lease_and_counts_attempts(store):
    make(store)
    store.claim("wf", 0, "m0", wake=False)
    # a copy of the same message while its holder is alive (within the lease) is a
    # duplicate: an ETA message re-delivered past the visibility timeout
    assert store.claim("wf", 0, "m0", wake=False, lease=60).status == ClaimStatus.BUSY
    assert store.claim("wf", None, "node-1", wake=True, lease=60).status == ClaimStatus.BUSY
    # the worker died mid-tick: past the lease, the same message takes its tick over
    again = store.claim("wf", 0, "m0", wake=False, lease=-1)
    assert (again.status, again.attempts) == (ClaimStatus.OK, 2)
    assert store.claim("wf", 0, "m0", wake=False, lease=-1).attempts == 3
    # and so does a wake-up whose node's message came back
    store.commit("wf", "m0", {}, 0, WorkflowStatus.RUNNING)
    assert store.claim("wf", None, "node-1", wake=True).attempts == 1
    assert store.claim("wf", None, "node-1", wake=True, lease=-1).attempts == 2


def test_commit_by_a_non_holder_is_refused(store):
    make(store)
    store.claim("wf", 0, "m0", wake=False)
    assert store.commit("wf", "intruder", {0: 2}, 1, WorkflowStatus.RUNNING) is None
    assert store.status("wf").states == bytes(4)


def test_finished_and_unknown_workflows(store):
    make(store)
    store.claim("wf", 0, "m0", wake=False)
    store.commit("wf", "m0", {}, 1, WorkflowStatus.SUCCEEDED)
    assert store.claim("wf", 1, "m1", wake=False).status == ClaimStatus.DONE
    assert store.claim("nope", 0, "m", wake=False).status == ClaimStatus.GONE


def test_a_workflow_past_its_maximum_age_is_claimed_as_expired(store):
    make(store, max_age=-1)
    claim = store.claim("wf", 0, "m0", wake=False)
    assert claim.status == ClaimStatus.EXPIRED
    assert store.commit("wf", "m0", {}, 1, WorkflowStatus.ERROR) is False


def test_load_returns_what_create_stored(store):
    make(store)
    assert store.load("wf") == (b"graph", b"header")


def test_a_driver_takes_over_a_hold_past_its_lease_as_a_re_tick(store):
    make(store)
    # a wake-up tick in some worker claimed it, then that worker vanished
    assert store.claim("wf", None, "node-1", wake=True).status == ClaimStatus.OK
    # within the lease the driver is told it is busy
    assert store.claim("wf", 0, "driver", wake=False, lease=60).status == ClaimStatus.BUSY
    # past the lease it takes over, as a re-tick (attempts of 2 or more)
    claim = store.claim("wf", 0, "driver", wake=False, lease=-1)
    assert (claim.status, claim.attempts >= 2) == (ClaimStatus.OK, True)
    # the vanished holder cannot renew or commit any more (a slow one learns it must stop)
    assert store.touch("wf", "node-1") is False
    assert store.touch("wf", "driver") is True
    assert store.commit("wf", "node-1", {0: 1}, 0, WorkflowStatus.RUNNING) is None


def test_a_wake_up_takes_over_a_hold_past_its_lease_as_a_re_tick(store):
    make(store)
    # the driver claimed it, then its worker vanished (on Redis its message comes back only
    # after the visibility timeout)
    assert store.claim("wf", 0, "driver", wake=False).status == ClaimStatus.OK
    # within the lease a node's wake-up is told it is busy; past it, it takes over
    assert store.claim("wf", None, "node-1", wake=True, lease=60).status == ClaimStatus.BUSY
    claim = store.claim("wf", None, "node-1", wake=True, lease=-1)
    assert (claim.status, claim.attempts >= 2) == (ClaimStatus.OK, True)
    assert store.commit("wf", "driver", {0: 1}, 1, WorkflowStatus.RUNNING) is None


def test_release_gives_the_hold_up_for_its_holder_only(store):
    make(store)
    store.claim("wf", None, "node-1", wake=True)
    store.release("wf", "someone-else")
    assert store.claim("wf", None, "node-2", wake=True).status == ClaimStatus.BUSY
    store.release("wf", "node-1")
    assert store.claim("wf", None, "node-2", wake=True).status == ClaimStatus.OK


def test_join_counters_say_when_a_tick_may_find_something_ready(store):
    store.create("wf", b"g", b"h", 4, 3600, joins={3: 2, -1: 1})
    assert store.count_down("wf", [3]) is False  # the join still waits for one parent
    assert store.count_down("wf", [3]) is True  # its last parent ended: tick
    assert store.count_down("wf", [-1]) is True  # the only sink ended: tick
    assert store.count_down("wf", [3]) is True  # a duplicate run: a harmless extra tick


def test_concurrent_claims_let_exactly_one_driver_in(store):
    """Eight drivers of the same generation claim at once: one ticks, the rest are busy."""
    import threading

    make(store)
    barrier = threading.Barrier(8)
    answers: list[ClaimStatus] = []

    def claim(i: int) -> None:
        barrier.wait(5)
        answers.append(store.claim("wf", 0, f"m{i}", wake=False).status)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    assert sorted(answers) == [ClaimStatus.BUSY] * 7 + [ClaimStatus.OK]


def test_a_successor_driver_takes_over_when_its_predecessor_died_holding(store):
    make(store)
    # the driver of generation 0 published its successor (generation 1), then died holding
    assert store.claim("wf", 0, "m0", wake=False).status == ClaimStatus.OK
    # its successor waits while the hold is alive, and says how long it has not been renewed
    early = store.claim("wf", 1, "m1", wake=False, lease=60)
    assert early.status == ClaimStatus.EARLY
    busy = store.claim("wf", None, "node-1", wake=True, lease=60)
    assert busy.status == ClaimStatus.BUSY and 0 <= busy.age < 60
    # past the lease the successor takes over, as a re-tick at the stored generation
    claim = store.claim("wf", 1, "m1", wake=False, lease=-1)
    assert (claim.status, claim.gen, claim.attempts >= 2) == (ClaimStatus.OK, 0, True)
