"""The README's first command: the demo runs real workflows on the embedded default."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_on_the_embedded_default():
    # When the demo runs with no server
    out = subprocess.run(
        [sys.executable, "-m", "dyrygent", "demo"], capture_output=True, text=True, timeout=120
    )
    # Then both workflows finish with their results, every node having succeeded
    assert out.returncode == 0, out.stderr[-2000:]
    assert "result: 'loaded 3 rows: Oslo 5.0C, Rome 20.0C, Lima 25.0C'" in out.stdout
    assert "result: 'finished with 599995' (57 tasks in" in out.stdout
    assert out.stdout.count("SUCCEEDED") == 3 + 57


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
