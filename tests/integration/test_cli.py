"""The command line, run as users run it (`celery -A workerapp dyrygent ...` and
`python -m dyrygent ... -A workerapp`), against the real redis-server and worker."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from celery import chain, chord, group

from dyrygent import Workflow
from dyrygent.workflow import WorkflowResult
from tests.harness import ROOT, WORKER_APP_DIR, free_port

STEERING = hasattr(WorkflowResult, "cancel")
needs_steering = pytest.mark.skipif(
    not STEERING, reason="needs WorkflowResult.cancel()/retry() (issue 10, branch steer)"
)


@pytest.fixture
def cli(env):
    """Run the CLI the given way ("celery" or "python"): returns the CompletedProcess."""
    full_env = {
        **os.environ,
        **env,
        "PYTHONPATH": os.pathsep.join([str(WORKER_APP_DIR), str(ROOT)]),
    }

    def run(*args: str, via: str = "celery", timeout: float = 60) -> subprocess.CompletedProcess:
        if via == "celery":
            cmd = [sys.executable, "-m", "celery", "-A", "workerapp", "dyrygent", *args]
        else:
            cmd = [sys.executable, "-m", "dyrygent", *args, "-A", "workerapp"]
        return subprocess.run(
            cmd,
            env=full_env,
            cwd=str(WORKER_APP_DIR),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


def start(app, canvas) -> tuple[Workflow, WorkflowResult]:
    wf = Workflow(app=app)
    wf.add_celery_canvas(canvas)
    return wf, wf.apply_async()


@pytest.mark.parametrize("via", ["celery", "python"])
def test_show_json_of_a_finished_chord(app, t, cli, via):
    # Given a finished chord
    wf, result = start(app, chord([t.add.s(i, i) for i in range(3)], t.tsum.s()))
    assert result.get(timeout=30) == 6
    # When it is shown as JSON
    out = cli("show", wf.id, "--json", via=via)
    # Then it prints exactly one JSON object, every node having succeeded, and exits 0
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["id"] == wf.id
    assert shown["state"] == "SUCCESS"
    assert shown["counts"] == {"SUCCEEDED": 4}
    assert shown["progress"] == {"done": 4, "total": 4}
    assert [n["id"] for n in shown["nodes"]] == [n.id for n in wf.nodes]
    assert set(shown["nodes"][0]) == {
        "id",
        "label",
        "task",
        "state",
        "started_at",
        "ended_at",
        "error",
    }
    assert shown["nodes"][3]["task"] == "t.tsum"
    assert shown["nodes"][3]["started_at"] <= shown["nodes"][3]["ended_at"]


def test_show_of_a_failed_workflow_names_the_error_and_exits_1(app, t, cli):
    # Given a workflow whose second step fails
    wf, result = start(app, chain(t.add.si(1, 1), t.fail.si(), t.add.si(2, 2)))
    with pytest.raises(Exception, match="expected failure"):
        result.get(timeout=30)
    # When it is shown
    out = cli("show", wf.id)
    # Then the summary names the failure, the upstream-failed step, and exits 1
    assert out.returncode == 1, out.stderr
    assert f"workflow {wf.id}: FAILURE" in out.stdout
    assert "1 SUCCEEDED, 1 FAILED, 1 UPSTREAM_FAILED" in out.stdout
    assert f"FAILED          t.fail  {wf.nodes[1].id}  ExpectedError: expected failure" in (
        out.stdout
    )
    # And --json carries the error as type and message
    shown = json.loads(cli("show", wf.id, "--json", via="python").stdout)
    assert shown["nodes"][1]["error"] == {"type": "ExpectedError", "message": "expected failure"}


def test_show_watch_follows_a_running_workflow_to_its_end(app, t, cli):
    # Given a workflow that runs for about a second
    wf, _ = start(app, chain(t.sleep_then.s(1, 0.6), group(t.add.s(i) for i in range(4))))
    # When it is watched (stdout is a pipe: plain lines, one per change)
    out = cli("show", wf.id, "--watch", via="python")
    # Then the live lines end with every node succeeded, then the summary, and exit 0
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    live = [line for line in lines if " done  " in line]
    assert live[-1].split()[1:] == ["SUCCESS", "5/5", "done", "5", "SUCCEEDED"]
    assert f"workflow {wf.id}: SUCCESS" in out.stdout


def test_ls_lists_the_newest_and_filters_by_state(app, t, cli):
    # Given a succeeded and a failed workflow
    ok, r1 = start(app, t.add.si(1, 2))
    bad, r2 = start(app, t.fail.si())
    assert r1.get(timeout=30) == 3
    with pytest.raises(Exception, match="expected failure"):
        r2.get(timeout=30)
    # When listed
    everything = cli("ls", "--limit", "5")
    failed = cli("ls", "--state", "failure", "--limit", "100", via="python")
    # Then the newest comes first; the filter keeps only failed ones
    assert everything.returncode == 0, everything.stderr
    rows = everything.stdout.splitlines()
    assert rows[0].split()[:2] == ["ID", "STATE"]
    assert rows[1].split()[:2] == [bad.id, "FAILURE"]
    assert rows[2].split()[:2] == [ok.id, "SUCCESS"]
    assert bad.id in failed.stdout and ok.id not in failed.stdout


def test_history_lists_every_state_change(app, t, cli):
    # Given a finished one-node workflow; when its history is printed
    # Then it runs from WAITING to SUCCEEDED, each line naming the node
    wf, result = start(app, t.add.si(1, 2))
    assert result.get(timeout=30) == 3
    out = cli("history", wf.id)
    assert out.returncode == 0, out.stderr
    changes = [line.split()[2:5] for line in out.stdout.splitlines()]
    assert changes[0][:2] == ["WAITING", "->"]
    assert changes[-1][2] == "SUCCEEDED"
    assert all(wf.nodes[0].id in line for line in out.stdout.splitlines())


def test_graph_as_dot_mermaid_and_svg(app, t, cli, tmp_path):
    wf, result = start(app, chord([t.add.s(i, i) for i in range(3)], t.tsum.s()))
    assert result.get(timeout=30) == 6
    dot = cli("graph", wf.id)
    assert dot.returncode == 0, dot.stderr
    assert dot.stdout == result.to_dot()
    assert 'fillcolor="#a8dab5"' in dot.stdout
    mermaid = cli("graph", wf.id, "--format", "mermaid", "--collapse", "2", via="python")
    assert 'n0["t.add ×3: 3 SUCCEEDED"]:::SUCCEEDED' in mermaid.stdout
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed (apt-get install graphviz)")
    svg = tmp_path / "wf.svg"
    out = cli("graph", wf.id, "--format", "svg", "-o", str(svg))
    assert out.returncode == 0, out.stderr
    assert ET.parse(svg).getroot().tag == "{http://www.w3.org/2000/svg}svg"


@pytest.mark.parametrize("via", ["celery", "python"])
@pytest.mark.parametrize("command", ["show", "history", "graph", "cancel", "retry"])
def test_an_unknown_id_exits_2_naming_it(cli, command, via):
    out = cli(command, "no-such-workflow", via=via)
    assert out.returncode == 2
    assert "dyrygent: no workflow no-such-workflow in the result backend" in out.stderr


def test_bad_usage_exits_2(cli):
    out = cli("ls", "--state", "sleeping")
    assert out.returncode == 2
    assert "'sleeping' is not one of" in out.stderr
    no_app = subprocess.run(
        [sys.executable, "-m", "dyrygent", "ls"], capture_output=True, text=True, timeout=60
    )
    assert no_app.returncode == 2
    assert "no Celery app: pass -A proj" in no_app.stderr


@needs_steering
def test_cancel_ends_a_workflow_cancelled(app, t, cli):
    # Given a workflow whose first node sleeps
    wf, _ = start(app, chain(t.sleep_then.si(1, 2), t.add.s(1)))
    # When it is cancelled from the command line
    out = cli("cancel", wf.id)
    assert out.returncode == 0, out.stderr
    assert f"workflow {wf.id}: cancel requested" in out.stdout
    # Then it ends CANCELLED, which show --watch reports with exit 1
    shown = cli("show", wf.id, "--watch", "--json", via="python")
    assert shown.returncode == 1, shown.stderr
    assert json.loads(shown.stdout)["state"] == "CANCELLED"


@needs_steering
def test_retry_wait_runs_the_failed_nodes_again(app, t, cli):
    # Given a failed workflow
    wf, result = start(app, chain(t.add.si(1, 1), t.fail.si()))
    with pytest.raises(Exception, match="expected failure"):
        result.get(timeout=30)
    # When it is retried with --wait
    out = cli("retry", wf.id, "--wait")
    # Then the failed node ran again, the workflow failed again, and the exit code says so
    assert out.returncode == 1, out.stdout + out.stderr
    assert "FAILURE" in out.stdout.splitlines()[-1]
    shown = json.loads(cli("show", wf.id, "--json").stdout)
    assert shown["counts"] == {"SUCCEEDED": 1, "FAILED": 1}
    launches = [line for line in cli("history", wf.id).stdout.splitlines() if "-> LAUNCHED" in line]
    assert sum(wf.nodes[1].id in line for line in launches) == 2


def test_a_backend_that_does_not_answer_exits_3(env):
    # Given the app's result backend on a port nothing listens on
    dead = f"redis://127.0.0.1:{free_port()}"
    full_env = {
        **os.environ,
        **env,
        "DYRYGENT_TEST_BACKEND": f"{dead}/1",
        "PYTHONPATH": os.pathsep.join([str(WORKER_APP_DIR), str(ROOT)]),
    }
    # When a workflow is asked for
    out = subprocess.run(
        [sys.executable, "-m", "dyrygent", "show", "abc", "-A", "workerapp"],
        env=full_env,
        cwd=str(WORKER_APP_DIR),
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Then the command says the store did not answer, and exits 3
    assert out.returncode == 3, out.stderr
    assert "the workflow store did not answer" in out.stderr
