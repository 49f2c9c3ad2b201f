"""Director's acceptance behaviour and what goes beyond it, on a real Redis and a real worker.

The worker runs ``defsapp`` (director-style tasks) on queues celery, dq and cq; the
definitions are ``definitions/workflows.yml``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from celery.exceptions import TaskRevokedError

from dyrygent import DefinitionError, PayloadInvalidError, load_definitions
from dyrygent.engine.stores import store_for
from tests.harness import ROOT, WORKER_APP_DIR, Worker, wait_for

TIMEOUT = 30


@pytest.fixture(scope="module")
def env(redis_server):
    """A broker and backend of this module's own (Redis databases 10 and 11): the session's
    worker, which does not know the definitions' tasks, must not take their messages."""
    return {
        "DYRYGENT_TEST_BROKER": redis_server.url(10),
        "DYRYGENT_TEST_BACKEND": redis_server.url(11),
        "DYRYGENT_TEST_LEDGER": redis_server.url(2),
    }


@pytest.fixture(scope="module")
def dapp(env):
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    import defsapp

    yield defsapp.make_app(env["DYRYGENT_TEST_BROKER"], env["DYRYGENT_TEST_BACKEND"], "defs-client")
    for k, v in saved.items():  # the other modules' workers and apps use the session's
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def defs_worker(env, dapp):
    w = Worker(env, app="defsapp", extra=("-Q", "celery,dq,cq"), name="defs")
    try:
        w.wait_ready(dapp)
        yield w
    finally:
        w.stop()


@pytest.fixture(scope="module")
def defs(dapp, defs_worker):
    return load_definitions(app=dapp)


def by_name(ledger, wf_id=None):
    """name -> list of [args, kwargs, queue] of each run, in run order."""
    out: dict[str, list] = {}
    for e in sorted(ledger.entries(), key=lambda e: e[5]):
        if wf_id is None or (isinstance(e[3], dict) and e[3].get("workflow_id") == wf_id):
            out.setdefault(e[1], []).append([e[2], e[3], e[6]])
    return out


def status(app, wf_id):
    return wait_for(
        lambda: (s := store_for(app).status(wf_id).status) and s.value != "running" and s.value,
        TIMEOUT,
        f"run {wf_id} to end",
    )


def test_a_sequence_passes_none_then_each_result_with_payload_and_workflow_id(defs, dapp, ledger):
    # Given director's ETL definition; when it runs with a payload
    result = defs.run("example.ETL", payload={"k": "v"})
    # Then its result is LOAD's, and every task got what director gives it
    assert result.get(timeout=TIMEOUT) == 21
    runs = by_name(ledger, result.id)
    assert runs["EXTRACT"][0][0] == [None]
    assert runs["TRANSFORM"][0][0] == [10]
    assert runs["LOAD"][0][0] == [20]
    for name in ("EXTRACT", "TRANSFORM", "LOAD"):
        assert runs[name][0][1] == {"payload": {"k": "v"}, "workflow_id": result.id}
    assert status(dapp, result.id) == "succeeded"


def test_a_group_gets_the_previous_result_and_the_next_step_a_list_in_yaml_order(defs, ledger):
    # Given NUMBER -> group(NUMBER, TRANSFORM) -> ADD; when it runs with n=3
    result = defs.run("example.GROUP", payload={"n": 3})
    # Then each member got NUMBER's result and ADD the list [3, 6]
    assert result.get(timeout=TIMEOUT) == 9
    runs = by_name(ledger, result.id)
    assert runs["TRANSFORM"][0][0] == [3]
    assert runs["ADD"][0][0] == [[3, 6]]


def test_a_chain_error_fails_the_run_and_later_steps_never_run(defs, dapp, ledger):
    # Given EXTRACT -> ERROR -> LOAD; when it runs
    result = defs.run("example.CHAIN_ERROR")
    # Then the run raises ERROR's exception, LOAD never runs, and the run ends failed
    with pytest.raises(ValueError, match="boom from ERROR"):
        result.get(timeout=TIMEOUT)
    assert status(dapp, result.id) == "failed"
    assert "LOAD" not in by_name(ledger, result.id)


def test_a_group_error_fails_the_run_and_the_step_after_never_runs(defs, dapp, ledger):
    result = defs.run("example.GROUP_ERROR")
    with pytest.raises(ValueError, match="boom from ERROR"):
        result.get(timeout=TIMEOUT)
    assert status(dapp, result.id) == "failed"
    runs = by_name(ledger, result.id)
    assert "TRANSFORM" in runs and "ADD" not in runs


def test_an_invalid_payload_lists_every_error_and_publishes_nothing(defs, ledger):
    # Given a definition with schema orders/create; when the payload breaks it twice
    with pytest.raises(PayloadInvalidError, match="2 errors") as info:
        defs.run("example.SCHEMA", payload={"qty": 0})
    # Then both errors are listed, and no task ran
    assert info.value.errors == [
        "$: 'customer' is a required property",
        "$.qty: 0 is less than the minimum of 1",
    ]
    assert ledger.entries() == []
    # and a valid payload runs
    ok = defs.run("example.SCHEMA", payload={"customer": "c", "qty": 2})
    assert ok.get(timeout=TIMEOUT) == [None]


def test_queues_default_and_customs_route_every_task(defs, ledger):
    result = defs.run("example.QUEUES")
    assert result.get(timeout=TIMEOUT) == 21
    runs = by_name(ledger, result.id)
    assert [runs[n][0][2] for n in ("EXTRACT", "TRANSFORM", "LOAD")] == ["dq", "dq", "cq"]
    one = defs.run("example.ONE_QUEUE")
    assert one.get(timeout=TIMEOUT) == 11
    assert {r[0][2] for r in by_name(ledger, one.id).values()} == {"dq"}


def test_the_success_hook_gets_the_result_and_the_failure_hook_is_skipped(defs, dapp, ledger):
    result = defs.run("example.HOOKS_OK")
    assert result.get(timeout=TIMEOUT) == 20
    assert status(dapp, result.id) == "succeeded"
    runs = by_name(ledger, result.id)
    assert runs["SUCCESS_HOOK"][0][0] == [20]
    assert runs["SUCCESS_HOOK"][0][1] == {"payload": {}, "workflow_id": result.id}
    assert "FAILURE_HOOK" not in runs


def test_the_failure_hook_gets_the_failed_step_and_the_run_still_fails(defs, dapp, ledger):
    # Given EXTRACT -> ERROR -> LOAD with both hooks; when it runs
    result = defs.run("example.HOOKS_FAIL")
    # Then the run raises the step's error (not the hook's success)
    with pytest.raises(ValueError, match="boom from ERROR"):
        result.get(timeout=TIMEOUT)
    assert status(dapp, result.id) == "failed"
    # and the failure hook ran once, with the failed node's label, id and error
    runs = by_name(ledger, result.id)
    assert "SUCCESS_HOOK" not in runs and "LOAD" not in runs
    assert len(runs["FAILURE_HOOK"]) == 1
    (info,) = runs["FAILURE_HOOK"][0][0]
    assert info["label"] == "ERROR" and info["task"] == "ERROR"
    assert info["error"] == "ValueError: boom from ERROR"
    assert info["id"] in result.states()


def test_a_list_ending_in_a_group_with_a_success_hook_succeeds(defs, dapp, ledger):
    # (director's defect: every such run fails)
    result = defs.run("example.ENDS_IN_GROUP")
    assert result.get(timeout=TIMEOUT) == [20, 11]
    assert status(dapp, result.id) == "succeeded"
    assert by_name(ledger, result.id)["SUCCESS_HOOK"][0][0] == [[20, 11]]


def test_relaunch_runs_the_same_definition_and_payload_again(defs, ledger):
    first = defs.run("example.GROUP", payload={"n": 2})
    assert first.get(timeout=TIMEOUT) == 6
    again = defs.relaunch(first.id)
    assert again.id != first.id
    assert again.get(timeout=TIMEOUT) == 6
    assert by_name(ledger, again.id)["NUMBER"][0][1]["payload"] == {"n": 2}


def test_cancel_a_running_definition(defs, dapp, ledger):
    # Given a run of example.SLOW (a 2 s step), while it runs
    result = defs.run("example.SLOW", payload={"sleep": 2})
    wait_for(lambda: by_name(ledger, result.id).get("SLOW"), TIMEOUT, "SLOW to start")
    # When it is cancelled
    assert result.cancel() is True
    # Then it ends CANCELLED, get() raises TaskRevokedError, and a second cancel says so
    with pytest.raises(TaskRevokedError):
        result.get(timeout=TIMEOUT)
    assert status(dapp, result.id) == "cancelled"
    assert result.cancel() is False


# --- beyond director -------------------------------------------------------------------


def test_nesting_chains_and_groups_to_any_depth(defs, ledger):
    # Given EXTRACT -> group(chain(TRANSFORM, LOAD), group(NUMBER, LOAD),
    #                         chain(LOAD, group(TRANSFORM, LOAD))) -> ECHO
    result = defs.run("beyond.NESTED", payload={"n": 1})
    # Then the inner group is spliced in, the chain ending in a group stays one list
    assert result.get(timeout=TIMEOUT) == [[21, 1, 11, [22, 12]]]


def test_an_expand_runs_its_steps_once_per_item_of_the_previous_result(defs, ledger):
    # Given ITEMS -> expand(TRANSFORM -> LOAD) -> ADD, over the payload's items
    result = defs.run("beyond.FANOUT", payload={"items": [1, 2, 3]})
    # Then each item went through its own chain, and ADD got their results in item order
    assert result.get(timeout=TIMEOUT) == (2 + 1) + (4 + 1) + (6 + 1)
    runs = by_name(ledger, result.id)
    assert sorted(r[0][0] for r in runs["TRANSFORM"]) == [1, 2, 3]


def test_per_task_options_reach_celery(defs, ledger):
    result = defs.run("beyond.OPTIONS")
    assert result.get(timeout=TIMEOUT) == 8
    runs = by_name(ledger, result.id)
    assert runs["NUMBER"][0][2] == "cq"  # its own queue
    assert runs["NUMBER"][0][1]["n"] == 4  # its kwargs
    assert runs["TRANSFORM"][0][2] == "dq"  # the definition's queue
    node = next(n for n in result.nodes if n.label == "four")
    assert node.task == "NUMBER"


def test_depends_on_builds_a_dag(defs, ledger):
    # a -> b, a -> c, (c, b) -> d
    result = defs.run("beyond.DAG")
    assert result.get(timeout=TIMEOUT) == [[11, 20]]
    runs = by_name(ledger, result.id)
    assert runs["TRANSFORM"][0][0] == [10] and runs["LOAD"][0][0] == [10]


def test_a_failing_side_branch_fails_the_run_with_a_failure_hook(defs, dapp, ledger):
    result = defs.run("beyond.DAG_SIDE_FAIL")
    with pytest.raises(ValueError, match="boom"):
        result.get(timeout=TIMEOUT)
    assert status(dapp, result.id) == "failed"
    (info,) = by_name(ledger, result.id)["FAILURE_HOOK"][0][0]
    assert info["label"] == "side"


# --- periodic runs ---------------------------------------------------------------------


def periodic_runs(ledger, task, payload):
    return {
        e[3]["workflow_id"]
        for e in ledger.entries()
        if e[1] == task and isinstance(e[3], dict) and e[3].get("payload") == payload
    }


def test_overlap_skip_does_not_start_while_the_previous_run_is_running(defs, dapp, ledger):
    # Given example.SLOW (overlap: skip, a 3 s task); when beat's task starts it twice
    first = defs.run_periodic("example.SLOW", dapp)
    second = defs.run_periodic("example.SLOW", dapp)
    # Then the second is skipped while the first runs, and the next after it is started
    assert first is not None and second is None
    assert first.get(timeout=TIMEOUT) == "slow"
    status(dapp, first.id)
    third = defs.run_periodic("example.SLOW", dapp)
    assert third is not None and third.id != first.id
    assert third.get(timeout=TIMEOUT) == "slow"


def test_retention_keeps_the_last_runs_records(dapp, defs_worker, ledger):
    # Given a definition keeping 2 runs; when it runs 3 times
    defs = load_definitions(
        {"keep.TWO": {"tasks": ["EXTRACT"], "retention": {"offset": 2}}}, app=dapp
    )
    ids = []
    for _ in range(3):
        r = defs.run("keep.TWO")
        r.get(timeout=TIMEOUT)
        status(dapp, r.id)
        ids.append(r.id)
    # Then the oldest run's records are gone, the last two kept
    store = store_for(dapp)
    assert store.status(ids[0]).status is None
    assert [store.status(i).status.value for i in ids[1:]] == ["succeeded", "succeeded"]
    with pytest.raises(DefinitionError, match="no definition record"):
        defs.relaunch(ids[0])


def test_beat_fires_an_interval_definition_twice(env, dapp, defs_worker, ledger, tmp_path):
    # Given a real `celery beat` on the app with dyrygent_beat = True
    log_file = open(tmp_path / "beat.log", "w")  # closed in the finally below
    beat = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "defsapp",
            "beat",
            "-l",
            "info",
            "-s",
            str(tmp_path / "schedule"),
        ],
        env={
            **os.environ,
            **env,
            "DYRYGENT_TEST_BEAT": "1",
            "PYTHONPATH": os.pathsep.join([str(WORKER_APP_DIR), str(ROOT)]),
        },
        cwd=str(WORKER_APP_DIR),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # When it runs; then example.PERIODIC (interval: 1) ran twice with its payload
        wait_for(
            lambda: len(periodic_runs(ledger, "NUMBER", {"n": 5})) >= 2,
            TIMEOUT,
            "two periodic runs of example.PERIODIC",
            interval=0.2,
        )
    finally:
        os.killpg(beat.pid, signal.SIGTERM)  # the beat we started, by its pid
        beat.wait(20)
        log_file.close()
    log = (tmp_path / "beat.log").read_text()
    assert "dyrygent: beat runs dyrygent:example.PERIODIC, dyrygent:example.SLOW" in log


# --- the CLI commands (click's CliRunner against the real app) ---------------------------


def cli(dapp, *args):
    from celery.bin.base import CLIContext
    from click.testing import CliRunner

    from dyrygent.definitions.cli import defs as defs_cmd
    from dyrygent.definitions.cli import relaunch, run

    commands = {"defs": defs_cmd, "run": run, "relaunch": relaunch}
    obj = CLIContext(app=dapp, no_color=True, workdir=None, quiet=False)
    return CliRunner().invoke(commands[args[0]], list(args[1:]), obj=obj)


def test_cli_lists_definitions_with_schedule_and_next_run(dapp, defs_worker):
    out = cli(dapp, "defs")
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].split() == ["NAME", "PERIODIC", "NEXT", "RUN"]
    etl = next(line for line in lines if line.startswith("example.ETL "))
    assert etl.split()[1:] == ["-", "-"]
    periodic = next(line for line in lines if line.startswith("example.PERIODIC "))
    assert "every 1s" in periodic and "UTC" in periodic


def test_cli_shows_a_definition_with_its_schema(dapp, defs_worker):
    out = cli(dapp, "defs", "show", "example.SCHEMA")
    assert out.exit_code == 0, out.output
    shown = json.loads(out.output)
    assert shown["fullname"] == "example.SCHEMA" and shown["tasks"] == ["ECHO"]
    assert shown["schema"]["required"] == ["customer", "qty"]


def test_cli_run_wait_prints_the_id_the_progress_and_the_result(dapp, defs_worker, ledger):
    out = cli(dapp, "run", "example.ETL", "--payload", '{"k": 1}', "--wait")
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    wf_id = lines[0]
    assert lines[-1] == "succeeded: 21"
    assert "  LOAD: SUCCEEDED" in lines
    assert by_name(ledger, wf_id)["EXTRACT"][0][1]["payload"] == {"k": 1}


def test_cli_run_of_a_failing_definition_exits_1(dapp, defs_worker):
    out = cli(dapp, "run", "example.CHAIN_ERROR", "--wait")
    assert out.exit_code == 1
    assert out.output.splitlines()[-1] == "failed: ValueError: boom from ERROR"


def test_cli_errors_exit_2_with_every_payload_error(dapp, defs_worker, ledger, tmp_path):
    (tmp_path / "p.json").write_text('{"qty": 0}')
    out = cli(dapp, "run", "example.SCHEMA", "--payload", f"@{tmp_path / 'p.json'}")
    assert out.exit_code == 2
    assert "  - $: 'customer' is a required property" in out.output
    assert "  - $.qty: 0 is less than the minimum of 1" in out.output
    assert ledger.entries() == []
    unknown = cli(dapp, "run", "example.ETX")
    assert unknown.exit_code == 2 and "did you mean 'example.ETL'" in unknown.output


def test_cli_relaunch_prints_the_new_run(dapp, defs_worker, ledger):
    first = cli(dapp, "run", "example.GROUP", "--payload", '{"n": 4}', "--wait")
    wf_id = first.output.splitlines()[0]
    out = cli(dapp, "relaunch", wf_id, "--wait")
    assert out.exit_code == 0, out.output
    new_id = out.output.splitlines()[0]
    assert new_id != wf_id and out.output.splitlines()[-1] == "succeeded: 12"


def test_cli_a_broken_definitions_file_exits_2_with_the_yaml_path(tmp_path):
    from celery import Celery

    (tmp_path / "w.yml").write_text("p.A:\n  tasks:\n    - X: {type: grop, tasks: []}\n")
    app = Celery("broken", set_as_current=False)
    app.conf.dyrygent_definitions = str(tmp_path / "w.yml")
    out = cli(app, "defs")
    assert out.exit_code == 2
    assert "p.A.tasks[0].X.type: unknown type 'grop' (did you mean 'group'?)" in out.output


def test_the_success_hook_of_a_dag_gets_the_last_steps_result_after_every_leaf(defs, ledger):
    # Given a -> NUMBER (a side leaf) and a -> TRANSFORM (the last step), with a success hook
    result = defs.run("beyond.DAG_HOOK", payload={"n": 7})
    # Then the run's result is TRANSFORM's, and the hook ran after both leaves with it
    # (a success is decided once every node settled: the hook has run when get() returns)
    assert result.get(timeout=TIMEOUT) == 20
    runs = by_name(ledger, result.id)
    assert runs["SUCCESS_HOOK"][0][0] == [20]
    hook_time = max(e[5] for e in ledger.entries() if e[1] == "SUCCESS_HOOK")
    assert all(e[5] < hook_time for e in ledger.entries() if e[1] == "NUMBER")
