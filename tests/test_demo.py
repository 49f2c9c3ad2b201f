"""The README's first command: the demo runs real workflows on the embedded default."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest


def run_demo(*args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, float]:
    """Run the demo; returns its outcome and the seconds between its last line and its exit."""
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "dyrygent", "demo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    lines = []
    assert proc.stdout is not None
    last = time.monotonic()
    for line in proc.stdout:
        lines.append(line)
        last = time.monotonic()
    proc.wait(timeout=120)
    lingered = time.monotonic() - last
    stderr = proc.stderr.read() if proc.stderr else ""
    return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(lines), stderr), lingered


def check_demo_output(stdout: str) -> None:
    # both workflows finish with their results
    assert "result: 'loaded 3 rows: Oslo 5.0C, Rome 20.0C, Lima 25.0C'" in stdout
    assert "result: 'finished with 599995' (57 tasks in" in stdout
    # the live view ends with every node succeeded (plain lines: stdout is a pipe)
    assert re.search(r"SUCCESS +3/3 done  3 SUCCEEDED\n", stdout)
    assert re.search(r"SUCCESS +57/57 done  57 SUCCEEDED\n", stdout)
    # the states each node went through, from its history, account for every node
    paths = re.findall(r"^    (WAITING -> .*)  \((\d+) nodes\)$", stdout, re.M)
    assert all(path.endswith("SUCCEEDED") for path, _ in paths)
    assert sum(int(n) for _, n in paths) == 3 + 57
    # and the commands to watch and steer a workflow from a shell
    wf = re.search(r"celery -A proj dyrygent show (\S+) --watch", stdout)
    assert wf is not None
    assert f"celery -A proj dyrygent retry {wf.group(1)} --wait" in stdout


def test_demo_runs_on_the_embedded_default():
    # When the demo runs with no server
    out, lingered = run_demo()
    # Then both workflows finish with their results, shown live, every node having succeeded
    assert out.returncode == 0, out.stderr[-2000:]
    check_demo_output(out.stdout)
    # And it exits as soon as it is done (it used to wait ~4 s for its in-process worker)
    assert lingered < 2.0, f"the demo exited {lingered:.1f}s after its last line"


def test_demo_runs_without_rich(tmp_path):
    # Given rich cannot be imported (the CLI's extra is not installed)
    (tmp_path / "rich").mkdir()
    (tmp_path / "rich" / "__init__.py").write_text("raise ImportError('rich hidden by a test')")
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    # When the demo runs, even asked to draw as on a terminal
    out, _ = run_demo(env={"PYTHONPATH": path, "FORCE_COLOR": "1"})
    # Then it shows the same plain lines
    assert out.returncode == 0, out.stderr[-2000:]
    check_demo_output(out.stdout)


def test_demo_draws_a_progress_bar_with_rich_on_a_terminal():
    pytest.importorskip("rich", reason="rich is the cli extra: pip install dyrygent[cli]")
    # When the demo runs where rich sees a terminal (FORCE_COLOR makes rich draw)
    out, _ = run_demo(env={"FORCE_COLOR": "1", "COLUMNS": "120"})
    # Then the workflows are drawn as bars (rich's bar glyphs), not line by line
    assert out.returncode == 0, out.stderr[-2000:]
    assert "━" in out.stdout
    assert "57/57" in out.stdout
    assert "result: 'finished with 599995' (57 tasks in" in out.stdout


def test_demo_runs_on_a_sqlite_database_backend(tmp_path):
    # When the demo keeps results and workflow state in Celery's database backend (SQLite)
    db = tmp_path / "results.db"
    out = subprocess.run(
        [sys.executable, "-m", "dyrygent", "demo", "--backend", f"db+sqlite:///{db}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # Then both workflows finish, and their state is in dyrygent's table of that database
    assert out.returncode == 0, out.stderr[-2000:]
    assert "result: 'finished with 599995' (57 tasks in" in out.stdout
    import sqlite3

    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT status FROM dyrygent_workflow").fetchall()
    assert sorted(rows) == [("succeeded",), ("succeeded",)]


def test_unknown_command_prints_usage():
    out = subprocess.run(
        [sys.executable, "-m", "dyrygent"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    assert "usage: python -m dyrygent demo" in out.stderr
    assert "python -m dyrygent COMMAND [ARGS] -A PROJ" in out.stderr
