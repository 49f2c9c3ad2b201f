"""The store's contract, on a real Redis (Lua), SQLite, PostgreSQL and MariaDB
(compare-and-set), on django-celery-results' database (PostgreSQL) as a Django project's app
picks it, and on the in-process key-value store: the generation fence, then the
records around it (WorkflowRecord, node events, snapshots, the index, forget)."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

import pytest
import redis as redis_lib
from celery import Celery
from sqlalchemy import func, select

from dyrygent.core.states import NodeState, WorkflowStatus
from dyrygent.engine.stores import ClaimStatus, NodeEvent, WorkflowRecord, sql_schema
from dyrygent.engine.stores.kv import KVStore
from dyrygent.engine.stores.redis import RedisStore
from dyrygent.engine.stores.sql import SQLStore
from tests.harness import wait_for


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


def django_store(request):
    """The store of the Django project's app (result_backend "django-db") on PostgreSQL,
    as store_for picks it."""
    from dyrygent.engine.stores import store_for
    from tests.django_project.fixtures import select_database

    select_database(request.getfixturevalue("django_env"), "postgresql")
    from tests.django_project.djproj.celery import make_app

    return store_for(make_app())


@pytest.fixture(params=["redis", "kv", "sqlite", "postgresql", "mysql", "django"])
def store(request, redis_server, tmp_path):
    if request.param == "redis":
        client = redis_lib.Redis.from_url(redis_server.url(5))
        client.flushdb()
        return RedisStore(client)
    if request.param == "sqlite":
        return SQLStore(f"sqlite:///{tmp_path}/store.db")
    if request.param in ("postgresql", "mysql", "django"):
        if request.param == "django":
            store = django_store(request)
        else:
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
    # Celery's memory cache is one per process: a prefix of its own isolates each test
    return KVStore(app.backend, prefix=f"dyrygent-test-{uuid.uuid4()}-")


def make(store, size=4, max_age=3600):
    store.create("wf", b"graph", b"header", size, max_age)


def test_first_claim_gets_the_states(store):
    make(store)
    claim = store.claim("wf", 0, "m0", wake=False)
    assert (claim.status, claim.gen, claim.attempts, claim.states) == (
        ClaimStatus.OK,
        0,
        1,
        bytes(4),
    )


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


# --- the records around the fence: WorkflowRecord, node events, the index, forget ----------


def after_store_clock_passes(store, t: float) -> None:
    """Wait until the store's clock is past ``t`` (SQLite's has millisecond steps), so the
    next creation time is strictly later. Local servers: this host's clock is theirs."""
    wait_for(lambda: time.time() > t + 0.002, 1, "the store's clock to move on")


def test_status_is_the_same_typed_workflow_info_on_every_store(store):
    # Given a workflow just created, then claimed by m0
    before = time.time()
    make(store)
    store.claim("wf", 0, "m0", wake=False)
    # When its status is read
    info = store.status("wf")
    # Then every field has the same type and value on every store
    assert type(info) is WorkflowRecord
    assert type(info.status) is WorkflowStatus and type(info.created) is float
    assert [type(v) for v in (info.id, info.gen, info.holder, info.attempts, info.states)] == [
        str,
        int,
        str,
        int,
        bytes,
    ]
    assert replace(info, created=None) == WorkflowRecord(
        "wf", WorkflowStatus.RUNNING, 0, "m0", 1, None, None, bytes(4)
    )
    # and it was created by the store's clock (the servers are local: this host's clock)
    assert before - 1 <= info.created <= time.time() + 1


def test_an_unknown_workflow_has_no_status(store):
    assert store.status("nope") == WorkflowRecord("nope")
    assert store.snapshot("nope") == (WorkflowRecord("nope"), [])
    assert store.history("nope") == []


def test_ended_is_set_by_the_commit_that_leaves_running(store):
    # Given a workflow committed once while still running
    make(store)
    store.claim("wf", 0, "m0", wake=False)
    store.commit("wf", "m0", {0: NodeState.LAUNCHED}, 1, WorkflowStatus.RUNNING)
    assert store.status("wf").ended is None
    # When the next commit ends it
    store.claim("wf", 1, "m1", wake=False)
    store.commit("wf", "m1", {0: NodeState.SUCCEEDED}, 2, WorkflowStatus.SUCCEEDED)
    # Then ended is set, after created, and the status is the enum
    info = store.status("wf")
    assert info.status is WorkflowStatus.SUCCEEDED and info.holder == ""
    assert type(info.ended) is float and info.created <= info.ended <= time.time() + 1


def test_commit_logs_one_event_per_changed_node_with_its_old_state(store):
    # Given a workflow whose nodes change over three commits (one a no-op for node 1)
    make(store)
    store.claim("wf", 0, "m0", wake=False)
    store.commit("wf", "m0", {1: NodeState.LAUNCHED, 2: NodeState.READY}, 1, "running")
    store.claim("wf", 1, "m1", wake=False)
    assert store.commit("wf", "intruder", {3: NodeState.FAILED}, 2, "failed") is None
    store.commit("wf", "m1", {1: NodeState.SUCCEEDED, 2: NodeState.LAUNCHED}, 2, "running")
    store.claim("wf", 2, "m2", wake=False)
    store.commit("wf", "m2", {1: NodeState.SUCCEEDED, 3: NodeState.READY}, 3, "running")
    # When its history is read
    events = store.history("wf")
    # Then each real change is one event, in commit order, with the state it replaced
    assert [(e.node, e.old, e.new) for e in events] == [
        (1, NodeState.WAITING, NodeState.LAUNCHED),
        (2, NodeState.WAITING, NodeState.READY),
        (1, NodeState.LAUNCHED, NodeState.SUCCEEDED),
        (2, NodeState.READY, NodeState.LAUNCHED),
        (3, NodeState.WAITING, NodeState.READY),
    ]
    assert all(type(e) is NodeEvent and type(e.old) is NodeState for e in events)
    times = [e.at for e in events]
    assert times == sorted(times) and times[0] >= store.status("wf").created
    assert times[0] == times[1] < times[2] == times[3] < times[4]
    # and the snapshot is the status and the history, read together
    assert store.snapshot("wf") == (store.status("wf"), events)


def test_a_large_commit_logs_every_change(store):
    # Given a workflow of 5,000 nodes
    store.create("wf", b"g", b"h", 5000, 3600)
    store.claim("wf", 0, "m0", wake=False)
    # When one commit launches every other node
    changes = {i: NodeState.LAUNCHED for i in range(0, 5000, 2)}
    store.commit("wf", "m0", changes, 1, WorkflowStatus.RUNNING)
    # Then one event per node, in node order
    events = store.history("wf")
    assert [e.node for e in events] == sorted(changes)
    assert store.status("wf").states == bytes([1, 0]) * 2500


def test_the_index_lists_newest_first_with_a_limit_and_a_status_filter(store):
    # Given three workflows created one after the other; b succeeded
    created = {}
    for wf in ("a", "b", "c"):
        store.create(wf, b"g", b"h", 2, 3600)
        created[wf] = store.status(wf).created
        after_store_clock_passes(store, created[wf])
    store.claim("b", 0, "mb", wake=False)
    store.commit("b", "mb", {0: NodeState.SUCCEEDED}, 1, WorkflowStatus.SUCCEEDED)
    # When they are listed, Then newest first, as their status says
    listed = store.list_workflows()
    assert [i.id for i in listed] == ["c", "b", "a"]
    assert listed == [store.status(wf) for wf in ("c", "b", "a")]
    assert [i.id for i in store.list_workflows(limit=2)] == ["c", "b"]
    assert [i.id for i in store.list_workflows(status=WorkflowStatus.SUCCEEDED)] == ["b"]
    assert [i.id for i in store.list_workflows(status=WorkflowStatus.RUNNING)] == ["c", "a"]
    assert store.list_workflows(status=WorkflowStatus.RUNNING, limit=1)[0].id == "c"
    # and the next page starts before the last one's creation time
    assert [i.id for i in store.list_workflows(before=created["b"])] == ["a"]
    assert store.list_workflows(status=WorkflowStatus.FAILED) == []


def expire(store, wf: str) -> None:
    """Make ``wf`` expire now, as its server would once its TTL passed."""
    if isinstance(store, RedisStore):
        store.client.delete(*(f"{store.prefix}{wf}:{k}" for k in "msgce"))
    elif isinstance(store, KVStore):
        store.backend.delete(store.prefix + wf + ":m")
    else:
        with store.engine.begin() as conn:
            table = sql_schema.workflows
            conn.execute(table.update().where(table.c.wf == wf).values(expires=0))


def test_expired_workflows_leave_the_index(store):
    # Given two workflows, one of which expired
    make(store)
    store.create("other", b"g", b"h", 2, 3600)
    expire(store, "wf")
    # When they are listed, Then only the live one is
    assert [i.id for i in store.list_workflows()] == ["other"]
    if isinstance(store, RedisStore):  # and the expired id was pruned from the index
        assert store.client.zrange(store.index_key, 0, -1) == [b"other"]


def test_forget_deletes_every_record(store):
    # Given a workflow with counters and events, and another one
    store.create("wf", b"g", b"h", 4, 3600, joins={3: 2})
    store.create("other", b"g", b"h", 2, 3600)
    store.claim("wf", 0, "m0", wake=False)
    store.commit("wf", "m0", {0: NodeState.LAUNCHED}, 1, WorkflowStatus.RUNNING)
    # When it is forgotten
    store.forget("wf")
    # Then nothing of it is left, and the other workflow is untouched
    assert store.status("wf") == WorkflowRecord("wf")
    assert store.history("wf") == [] and store.load("wf") == (None, None)
    assert store.claim("wf", 1, "m1", wake=False).status is ClaimStatus.GONE
    assert [i.id for i in store.list_workflows()] == ["other"]
    if isinstance(store, RedisStore):
        left = {k.decode() for k in store.client.keys(store.prefix + "*")}
        assert left == {f"{store.prefix}other:{k}" for k in "msge"} | {
            store.index_key,
            store.index_key + "-ttl",
        }
    elif isinstance(store, SQLStore):
        with store.engine.connect() as conn:
            for table in (sql_schema.join_table, sql_schema.event_table):
                n = conn.execute(select(func.count()).select_from(table)).scalar_one()
                assert n == 0, table.name
    store.forget("never-was")  # a no-op


# --- steering: initial states, reopen, retention ------------------------------------------


def test_create_takes_initial_states(store):
    # Given a workflow created with node 1 already SUCCEEDED (skipped by the client)
    store.create("wf", b"g", b"h", 3, 3600, states=bytes([0, NodeState.SUCCEEDED, 0]))
    # Then the first claim sees it
    assert store.claim("wf", 0, "m0", wake=False).states == bytes([0, 2, 0])


def test_reopen_a_finished_workflow_moves_the_fence_and_logs_events(store):
    # Given a workflow that ended FAILED at generation 2
    make(store)
    store.claim("wf", 0, "m0", wake=False)
    store.commit("wf", "m0", {0: NodeState.LAUNCHED, 1: NodeState.LAUNCHED}, 1, "running")
    store.claim("wf", 1, "m1", wake=False)
    store.commit("wf", "m1", {0: NodeState.SUCCEEDED, 1: NodeState.FAILED}, 2, "failed")
    assert store.status("wf").ended is not None
    # When it is reopened at generation 2 with node 1 back to WAITING
    assert store.reopen("wf", 2, {1: NodeState.WAITING}, 3600) is True
    # Then it runs again at generation 3, without an end, node 1 waiting, the change logged
    info = store.status("wf")
    assert (info.status, info.gen, info.ended, info.holder) == ("running", 3, None, "")
    assert info.states == bytes([2, 0, 0, 0])
    last = store.history("wf")[-1]
    assert (last.node, last.old, last.new) == (1, NodeState.FAILED, NodeState.WAITING)
    # and the old driver of generation 2 is stale; the new one claims it
    assert store.claim("wf", 2, "m2", wake=False).status is ClaimStatus.STALE
    assert store.claim("wf", 3, "m3", wake=False).status is ClaimStatus.OK


def test_reopen_refuses_running_unknown_and_moved_on_workflows(store):
    # Given a running workflow
    make(store)
    # Then it cannot be reopened, nor can an unknown one
    assert store.reopen("wf", 0, {0: NodeState.WAITING}, 3600) is False
    assert store.reopen("nope", 0, {}, 3600) is False
    # Given it ended cancelled at generation 1
    store.claim("wf", 0, "m0", wake=False)
    store.commit("wf", "m0", {0: NodeState.CANCELLED}, 1, "cancelled")
    # Then a reopen at a generation it is no longer at writes nothing (another won)
    assert store.reopen("wf", 0, {0: NodeState.WAITING}, 3600) is False
    assert store.status("wf").status is WorkflowStatus.CANCELLED
    assert store.reopen("wf", 1, {0: NodeState.WAITING}, 3600) is True
    assert store.reopen("wf", 1, {0: NodeState.WAITING}, 3600) is False


def test_records_live_max_age_plus_keep(store):
    # Given a workflow created with max_age 60 and keep 100
    store.create("wf", b"g", b"h", 2, 60, keep=100)
    # Then its records expire 160 seconds later (checked where the store exposes it)
    if isinstance(store, RedisStore):
        for kind in "msge":
            assert 150 <= store.client.ttl(f"{store.prefix}wf:{kind}") <= 160
    elif isinstance(store, SQLStore):
        with store.engine.connect() as conn:
            row = conn.execute(
                select(sql_schema.workflows.c.expires - sql_schema.workflows.c.created)
            ).scalar_one()
        assert abs(row - 160) < 1
    else:
        meta = store._meta("wf")
        assert abs(meta["expires"] - meta["created"] - 160) < 1
